"""`jvae env` says what a bug report needs, and what a run started here would do."""

from __future__ import annotations

import json
import platform

import torch

from jvae.base.devices import bf16_is_fast


def test_env_reports_versions_cpu_and_the_threads_a_run_would_take(cli, monkeypatch):
    monkeypatch.setenv("JVAE_THREADS", "3")
    monkeypatch.setenv("JVAE_CACHE", "/somewhere/cache")
    result = cli("env", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["python"] == platform.python_version() and report["torch"] == str(torch.__version__)
    assert report["libraries"]["numpy"] and report["libraries"]["pydantic"]
    assert report["cpu"]["bf16_arithmetic"] == bf16_is_fast(torch.device("cpu"))
    assert report["threads"] == {"jvae_would_use": "3", "because": "$JVAE_THREADS"}
    assert report["folders"]["cache"] == "/somewhere/cache"
    assert (report["cuda"] is None) == (not torch.cuda.is_available())
    monkeypatch.delenv("JVAE_THREADS")
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setenv("COLUMNS", "80")
    text = cli("env")
    assert text.exit_code == 0
    assert f"torch {torch.__version__}" in text.stdout and "threads a CPU run would use now" in text.stdout
    assert all(
        len(line) <= 80 for line in text.stdout.splitlines() if not line.startswith(("jvae ", "platform"))
    )
