"""Shared fixtures: the CLI runner and tiny real configurations that train in seconds."""

from __future__ import annotations

import http.server
import os
import threading

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
