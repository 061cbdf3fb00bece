"""Shared fixtures: the CLI runner and tiny real configurations that train in seconds."""

from __future__ import annotations

import os

import pytest
import torch
from typer.testing import CliRunner

from jvae_cli.cli import app

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Tests never write into the user's own preprocessing cache."""
    os.environ["JVAE_CACHE"] = str(tmp_path_factory.mktemp("jvae-cache"))


@pytest.fixture
def cli():
    """Run `jvae ARGS...` in-process and return the result (exit_code, stdout, stderr)."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)

    return invoke


@pytest.fixture
def small() -> list[str]:
    """Overrides making quickstart 32x32: same data and latents, a quarter of the pixels, for many-step tests."""
    return [
        "data.image_size=32",
        'model.architecture="conv32"',
        "train.log_every=10",
        "train.checkpoint_every=1000",
    ]
