"""jvae: JointVAE and related disentangling VAEs, from training to traversals and metric reports.

Importing the package is cheap (no torch) so that `jvae --help` stays fast; the engine modules import torch
themselves.
"""

from __future__ import annotations

__version__ = "0.1.0"
