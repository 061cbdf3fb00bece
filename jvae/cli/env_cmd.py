"""`jvae env`: what a bug report needs, as text or JSON."""

from __future__ import annotations

import json
import textwrap
from typing import Any

import typer

from jvae.cli.console import out


def env(as_json: bool = typer.Option(False, "--json", help="Print the report as JSON.")) -> None:
    """Print what a bug report needs: versions, CPU, GPU, threads.

    jvae's, Python's and the key libraries' versions, the CPU and whether it has bf16 arithmetic, the GPU
    with CUDA and cuDNN, and the threads a run started now would take: what a run here would do.
    """
    from jvae.use.environment import describe

    report = describe()
    if as_json:
        print(json.dumps(report, indent=2))
        return
    for line in lines(report):
        out.print(line, markup=False, highlight=False)


def lines(report: dict[str, Any]) -> list[str]:
    cpu, threads, cuda = report["cpu"], report["threads"], report["cuda"]
    text = [
        f"jvae {report['jvae']}, Python {report['python']} ({report['python_path']})",
        f"platform: {report['platform']}",
        f"torch {report['torch']}",
        *textwrap.wrap(
            "libraries: "
            + ", ".join(f"{name} {version}" for name, version in report["libraries"].items() if version),
            width=80,
            subsequent_indent="  ",
        ),
        "not installed: "
        + (", ".join(name for name, version in report["libraries"].items() if not version) or "none"),
        f"cpu: {cpu['model']}, {cpu['cores']} cores, {cpu['capability']}, bf16 arithmetic: "
        + ("yes" if cpu["bf16_arithmetic"] else "no (bf16 is emulated: slow)"),
        f"threads a CPU run would use now: {threads['jvae_would_use']} ({threads['because']})",
    ]
    if cuda is None:
        text.append("cuda: no usable GPU")
    else:
        text.append(f"cuda {cuda['cuda']}, cudnn {cuda['cudnn']}, bf16: {'yes' if cuda['bf16'] else 'no'}")
        for index, device in enumerate(cuda["devices"]):
            text.append(
                f"  cuda:{index} {device['name']}, {device['memory_gib']} GiB, compute {device['capability']}"
            )
    folders = report["folders"]
    text.append(f"data: {folders['data'] or '$JVAE_DATA not set'}; cache: {folders['cache']}")
    return text
