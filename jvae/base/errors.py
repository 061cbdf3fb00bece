"""Errors the engine raises for problems a user can fix.

The CLI turns each of these into one line on stderr and the exit code it carries, so that shell scripts
can tell a bad preset (2, like a usage error) from missing data or a bad checkpoint (1).
"""

from __future__ import annotations


class JvaeError(Exception):
    """A problem with the user's input, explained in one line."""

    exit_code = 1


class UsageError(JvaeError):
    """A command-line value that cannot be used (an unknown device, a value out of range)."""

    exit_code = 2


class PresetError(JvaeError):
    """A preset name, file, key or value that does not validate."""

    exit_code = 2


class DataNotFoundError(JvaeError):
    """The dataset a preset names is not where jvae looked."""


class DataError(JvaeError):
    """The dataset was found but cannot be read as the preset says."""


class CheckpointError(JvaeError):
    """A checkpoint that is missing, damaged, or not one jvae wrote."""


class RunDirError(JvaeError):
    """A run directory that cannot be used as asked (it would overwrite a run, or holds none to resume)."""
