"""Shared fixtures: the CLI runner, tiny real configurations that train in seconds, and models trained once per
session for every test that only reads them (a test that changes a run works on a copy of its own)."""

from __future__ import annotations

import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from jvae.cli import app

torch.set_num_threads(2)


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory):
    """Tests never write into the user's own preprocessing cache."""
    os.environ["JVAE_CACHE"] = str(tmp_path_factory.mktemp("jvae-cache"))


# Generated dSprites at 32x32 with four continuous units and one 4-way variable, trained 800 steps (about 40
# seconds): two continuous units hold the position (about 2.4 nats each), two stay unused (below 0.05 nats)
# and the discrete variable draws a different sprite per category. Where a run lands after 800 steps depends
# on the kernels' rounding, so the seed and learning rate are ones whose model came out the same under every
# rounding tried: one and two threads, and this CPU limited to AVX2 (ATEN_CPU_CAPABILITY=avx2
# ONEDNN_MAX_CPU_ISA=AVX2). Seed 7 at learning rate 1e-3, used before, gave the clean model on an AVX-512 CPU
# and a mixed one under AVX2 (and on another CI machine).
SPRITES = [
    "data.image_size=32",
    'model.architecture="conv32"',
    "model.continuous=4",
    "model.discrete=[4]",
    "loss.continuous_capacity.stop=5",
    "loss.continuous_capacity.steps=600",
    "loss.discrete_capacity.stop=1.4",
    "loss.discrete_capacity.steps=600",
    "train.steps=800",
    "train.lr=0.002",
    "train.log_every=100",
    "train.seed=5",
]


def _digests(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir()) if p.is_file()
    }


@pytest.fixture(scope="session")
def sprites_ckpt(tmp_path_factory) -> Iterator[Path]:
    """A JointVAE trained 800 steps on generated dSprites (`SPRITES`) whose units mean something, for the
    commands that read a trained model (traverse, encode, edit, evaluate). Read it only (checked at the session's end); copy it to change it."""
    from jvae.modeling.presets import load_preset
    from jvae.training import trainer

    _, preset = load_preset("quickstart", SPRITES)
    run = tmp_path_factory.mktemp("sprites") / "run"
    trainer.train(preset, "quickstart", run)
    before = _digests(run)
    yield run / "ckpt.pt"
    assert _digests(run) == before, "a test changed the shared sprites run"


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory) -> Iterator[Path]:
    """A finished 4-step digits run (checkpoint every 2 steps, a log line every 2): checkpoint, metrics, preset
    and traversal, for the commands that read a run. Read it only (checked at the session's end)."""
    from jvae.modeling.presets import load_preset
    from jvae.training import trainer

    folder = tmp_path_factory.mktemp("digits") / "run"
    name, preset = load_preset("digits", ["train.steps=4", "train.log_every=2", "train.checkpoint_every=2"])
    trainer.train(preset, name, folder)
    before = _digests(folder)
    yield folder
    assert _digests(folder) == before, "a test changed the shared digits run"


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


class _Files(http.server.BaseHTTPRequestHandler):
    """Serves `payloads[path]`; a path ending in /cut, or starting with /cut/, promises more bytes than it sends."""

    payloads: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 (http.server's naming)
        cut = self.path.endswith("/cut") or self.path.startswith("/cut/")
        body = self.payloads.get(self.path.removesuffix("/cut").removeprefix("/cut"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if cut else body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    """A loopback HTTP server: (base URL, the dict of path -> bytes it serves)."""
    _Files.payloads = {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Files)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", _Files.payloads
    httpd.shutdown()
