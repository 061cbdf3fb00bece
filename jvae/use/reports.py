"""The evaluation report on disk: report.json (numbers and settings), report.md (for people) and figures."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from jvae.base.files import write_text, write_via
from jvae.evaluation import Report
from jvae.evaluation.registry import title

REPORT_FILES = ("report.json", "report.md", "kl_per_unit.png", "top_units.gif", "mi_heatmap.png")


def rows(report: Report) -> list[tuple[str, str]]:
    """(metric title, value) pairs for tables: nested metrics flattened as `title: key`."""
    out = []
    for name, value in report.metrics.items():
        if isinstance(value, dict):
            out += [(f"{title(name)}: {key}", _fmt(inner)) for key, inner in value.items()]
        else:
            out.append((title(name), _fmt(value)))
    return out


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def write_json(report: Report, path: Path) -> None:
    write_text(path, json.dumps(asdict(report), indent=2) + "\n")


def write_markdown(report: Report, path: Path, figures: list[str]) -> None:
    lines = ["# jvae evaluation report", ""]
    settings = report.settings
    lines += [
        f"- checkpoint: `{settings['checkpoint']}` (sha256 `{settings['checkpoint_sha256'][:16]}...`)",
        f"- dataset: {settings['dataset']}",
        f"- seed: {settings['seed']}{' (fast: a tenth of the default sample counts)' if settings['fast'] else ''}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in settings["versions"].items()),
        "",
        "| metric | value |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value} |" for name, value in rows(report)]
    if report.factor_units:
        lines += [
            "",
            "## Which unit carries each factor",
            "",
            "| factor | unit | normalised MI | runner-up | clear |",
            "|---|---|---|---|---|",
        ]
        for e in report.factor_units:
            lines.append(
                f"| {e['factor']} | {e['label']} | {e['normalised_mi']:.3f} | {e['runner_up_mi']:.3f} | {'yes' if e['clear'] else 'no'} |"
            )
    if report.unit_kl:
        lines += ["", "## Mean KL per unit (held-out images, nats)", "", "| unit | KL |", "|---|---|"]
        lines += [f"| {unit} | {kl:.3f} |" for unit, kl in report.unit_kl.items()]
    if figures:
        lines += ["", "## Figures", ""] + [f"![{name}]({name})" for name in figures]
    write_text(path, "\n".join(lines) + "\n")


def kl_bars(report: Report, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    units, values = list(report.unit_kl), list(report.unit_kl.values())
    fig, ax = plt.subplots(figsize=(max(4, 0.5 * len(units) + 2), 3))
    ax.bar(units, values, color="#4C72B0")
    ax.set_xlabel("unit")
    ax.set_ylabel("mean KL (nats)")
    ax.set_title("information per latent unit")
    fig.tight_layout()
    write_via(path, lambda temporary: fig.savefig(temporary, dpi=100, format="png"))
    plt.close(fig)


def mi_heatmap(report: Report, factor_names: list[str], unit_labels: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.nan_to_num(np.array(report.mi_matrix, dtype=float))
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(unit_labels) + 2), 0.5 * len(factor_names) + 1.5))
    image = ax.imshow(matrix, cmap="viridis", vmin=0, vmax=max(1e-9, float(matrix.max())), aspect="auto")
    ax.set_xticks(range(len(unit_labels)), unit_labels)
    ax.set_yticks(range(len(factor_names)), factor_names)
    for (r, c), value in np.ndenumerate(matrix):
        ax.text(
            c,
            r,
            f"{value:.2f}",
            ha="center",
            va="center",
            color="white" if value < matrix.max() / 2 else "black",
            fontsize=7,
        )
    ax.set_title("mutual information / H(factor)")
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    write_via(path, lambda temporary: fig.savefig(temporary, dpi=100, format="png"))
    plt.close(fig)
