"""`hf:OWNER/NAME` through the real huggingface_hub client, against a loopback server that answers the way the
Hub's API and download endpoints do (set through the client's own HF_ENDPOINT), so its cache, revisions,
offline mode and errors are the real ones; `jvae push` checked at the client's call boundary (the Hub's
upload protocol is not served here). No test reaches the real Hub."""

from __future__ import annotations

import hashlib
import http.server
import json
import os
import re
import subprocess
import sys
import threading
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch

from jvae.modeling.builder import build_model
from jvae.modeling.checkpoint import Checkpoint
from jvae.modeling.presets import load_preset
from jvae.use import shared

SHA = "0123456789abcdef0123456789abcdef01234567"


class _Hub(http.server.BaseHTTPRequestHandler):
    """Repositories as {repo id: {"files": {name: bytes}, "private": bool, "sizes": {name: claimed size}}}."""

    repos: dict[str, dict] = {}
    token = "hf_secret"

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _repo(self, repo: str) -> dict | None:
        entry = self.repos.get(repo)
        allowed = entry is not None and (
            not entry.get("private") or self.headers.get("Authorization") == f"Bearer {self.token}"
        )
        if not allowed:
            self._send(401, b'{"error": "Repository not found"}', {"X-Error-Code": "RepoNotFound"})
            return None
        return entry

    def _revision(self, revision: str) -> bool:
        if revision in ("main", SHA):
            return True
        self._send(404, b'{"error": "Invalid rev id"}', {"X-Error-Code": "RevisionNotFound"})
        return False

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        info = re.fullmatch(r"/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?", path)
        tree = re.fullmatch(r"/api/models/([^/]+/[^/]+)/tree/([^/]+)(/.*)?", path)
        resolve = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", path)
        if info:
            entry = self._repo(info[1])
            if entry is None or not self._revision(info[2] or "main"):
                return
            siblings = [
                {"rfilename": name, "size": entry.get("sizes", {}).get(name, len(data))}
                for name, data in entry["files"].items()
            ]
            body = {"id": info[1], "modelId": info[1], "sha": SHA, "private": False, "siblings": siblings}
            self._send(200, json.dumps(body).encode(), {"Content-Type": "application/json"})
        elif tree:
            entry = self._repo(tree[1])
            if entry is None or not self._revision(tree[2]):
                return
            listed = [
                {"type": "file", "path": name, "size": len(data), "oid": hashlib.sha1(data).hexdigest()}
                for name, data in entry["files"].items()
            ]
            self._send(200, json.dumps(listed).encode(), {"Content-Type": "application/json"})
        elif resolve:
            entry = self._repo(resolve[1])
            if entry is None or not self._revision(resolve[2]):
                return
            data = entry["files"].get(resolve[3])
            if data is None:
                self._send(404, b"", {"X-Error-Code": "EntryNotFound"})
                return
            tag = hashlib.sha1(data).hexdigest()
            self._send(200, data, {"X-Repo-Commit": SHA, "ETag": f'"{tag}"'})
        else:
            self._send(404)


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hubmodel")
    name, preset = load_preset("digits", [])
    torch.manual_seed(3)
    model = build_model(preset)
    ckpt = folder / "ckpt.pt"
    checkpoint = Checkpoint.new(name, preset, model.state_dict(), 5)
    checkpoint.unit_names = {"d0": "digit"}
    checkpoint.save(ckpt)
    shared.export(ckpt, folder / "shared", repo_id="me/digits")
    files = {p.name: p.read_bytes() for p in (folder / "shared").iterdir()}
    _Hub.repos = {
        "me/digits": {"files": files},
        "me/secret": {"files": files, "private": True},
        "me/pickled": {"files": {"pytorch_model.bin": ckpt.read_bytes(), "config.json": b"{}"}},
        "me/bloated": {"files": files, "sizes": {"model.safetensors": 2**40}},
    }
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", ckpt
    server.shutdown()


SCRIPT = """
import json, sys, torch, jvae
from jvae.base.errors import JvaeError
found = {}
for name in sys.argv[2:]:
    try:
        model = jvae.load(name, device="cpu")
        torch.manual_seed(0)
        images = torch.rand(2, 1, 32, 32)
        found[name] = {"mean": model.encode(images).mean.tolist(), "names": model.unit_names}
    except JvaeError as error:
        found[name] = {"error": str(error)}
with open(sys.argv[1], "w") as handle:
    json.dump(found, handle)
"""


def _load(tmp_path: Path, env: dict[str, str], *names: str) -> dict:
    result = tmp_path / "found.json"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(result), *names],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(result.read_text())


def test_hf_names_load_through_the_real_client_its_cache_offline_mode_and_errors(hub, tmp_path):
    endpoint, ckpt = hub
    env = {k: v for k, v in os.environ.items() if not k.startswith("HF_")}
    env.update(HF_ENDPOINT=endpoint, HF_HOME=str(tmp_path / "hf"), HF_HUB_DISABLE_TELEMETRY="1")
    import jvae

    local = jvae.load(ckpt, device="cpu")
    torch.manual_seed(0)
    expected = local.encode(torch.rand(2, 1, 32, 32)).mean

    names = ["hf:me/digits", f"hf:me/digits@{SHA}", "hf:me/digits@v9", "hf:me/secret", "hf:me/nothing"]
    names += ["hf:me/pickled", "hf:me/bloated", "hf:../etc"]
    found = _load(tmp_path, env, *names)
    for name in ("hf:me/digits", f"hf:me/digits@{SHA}"):
        assert torch.allclose(torch.tensor(found[name]["mean"]), expected, atol=1e-6, rtol=0)
        assert found[name]["names"] == {"d0": "digit"}
    assert "no revision 'v9'" in found["hf:me/digits@v9"]["error"]
    assert "private one: set HF_TOKEN" in found["hf:me/secret"]["error"]
    assert "no such model repository" in found["hf:me/nothing"]["error"]
    assert "not a jvae model (the repository has no model.safetensors)" in found["hf:me/pickled"]["error"]
    assert "more than a jvae model's" in found["hf:me/bloated"]["error"]
    assert "a hub model is hf:OWNER/NAME" in found["hf:../etc"]["error"]
    snapshots = list((tmp_path / "hf" / "hub").glob("models--me--digits/snapshots/*/"))
    assert len(snapshots) == 1 and {p.name for p in snapshots[0].iterdir()} == {
        "config.json",
        "model.safetensors",
    }

    # With the token the private one loads; offline, the cached one still loads and the rest say why.
    secret = _load(tmp_path, {**env, "HF_TOKEN": _Hub.token}, "hf:me/secret")
    assert torch.allclose(torch.tensor(secret["hf:me/secret"]["mean"]), expected, atol=1e-6, rtol=0)
    offline = _load(tmp_path, {**env, "HF_HUB_OFFLINE": "1"}, "hf:me/digits", "hf:me/other")
    assert torch.allclose(torch.tensor(offline["hf:me/digits"]["mean"]), expected, atol=1e-6, rtol=0)
    assert "not in the hub cache" in offline["hf:me/other"]["error"]
    unreachable = _load(tmp_path, {**env, "HF_ENDPOINT": "http://127.0.0.1:9"}, "hf:me/digits", "hf:me/other")
    assert (
        "mean" in unreachable["hf:me/digits"]
        and "not in the hub cache" in unreachable["hf:me/other"]["error"]
    )

    done = subprocess.run(
        [sys.executable, "-m", "jvae", "units", "hf:me/nothing"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1 and done.stderr.strip().splitlines() == [
        "error: hf:me/nothing: no such model repository, or a private one: set HF_TOKEN or log in (hf auth login)"
    ]


def test_push_uploads_the_exported_folder_through_the_client(digits_run, cli, monkeypatch):
    from huggingface_hub import HfApi

    calls: list[tuple[str, dict]] = []

    def record(name: str):
        def call(self, *args: object, **kwargs: object) -> str:
            if name == "upload_folder":
                folder = Path(str(kwargs["folder_path"]))
                kwargs["files"] = {p.name: p.stat().st_size for p in folder.iterdir()}
                kwargs["card"] = (folder / "README.md").read_text()
            calls.append((name, {"args": args, **kwargs, "token": self.token}))
            return "https://hub.example/commit/1"

        return call

    for name in ("create_repo", "create_branch", "upload_folder"):
        monkeypatch.setattr(HfApi, name, record(name))
    result = cli("push", digits_run, "me/digits", "--private", "--revision", "dev", "--token", "hf_x")
    assert result.exit_code == 0, result.output
    assert "pushed to hf:me/digits@dev" in result.stdout
    assert [name for name, _ in calls] == ["create_repo", "create_branch", "upload_folder"]
    assert (
        calls[0][1]["private"] is True and calls[0][1]["exist_ok"] is True and calls[0][1]["token"] == "hf_x"
    )
    upload = calls[2][1]
    assert upload["repo_id"] == "me/digits" and upload["revision"] == "dev"
    assert set(upload["files"]) == {
        "README.md",
        "config.json",
        "model.safetensors",
        "preset.toml",
        "traversals.gif",
    }
    assert "optimizer.safetensors" not in upload["files"] and "jvae traverse hf:me/digits" in upload["card"]
    bad = cli("push", digits_run, "not a repo")
    assert bad.exit_code == 2 and "hf:OWNER/NAME" in bad.output and len(calls) == 3


@pytest.mark.real_hub
@pytest.mark.skipif(
    not (os.environ.get("HF_TOKEN") and os.environ.get("JVAE_TEST_HUB_REPO")),
    reason="needs HF_TOKEN and JVAE_TEST_HUB_REPO=OWNER/NAME (a repository this token may write)",
)
def test_push_then_load_through_the_real_hub(digits_run, cli, tmp_path):
    repo = os.environ["JVAE_TEST_HUB_REPO"]
    pushed = cli("push", digits_run, repo, "--private")
    assert pushed.exit_code == 0, pushed.output
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf")}
    found = _load(tmp_path, env, f"hf:{repo}")
    import jvae

    local = jvae.load(digits_run, device="cpu")
    torch.manual_seed(0)
    expected = local.encode(torch.rand(2, 1, 32, 32)).mean
    assert torch.allclose(torch.tensor(found[f"hf:{repo}"]["mean"]), expected, atol=1e-6, rtol=0)
