"""The README and the manual stay true to the code: the generated reference is regenerated and compared, the
README stays a landing page, and nothing points at files a user's clone does not have."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any, cast

import pytest
import typer

from jvae.cli import app
from jvae.cli import reference as ref

REPO = Path(__file__).resolve().parent.parent
MAIN_COMMANDS = ("train", "traverse", "evaluate", "sweep", "edit", "encode", "sample")
# Spelled in two halves so that this file does not itself hold what it searches for.
OUTSIDE = ("DESIGN" + ".md", ".." + "/shared")


def _commands() -> dict[str, Any]:
    root = cast(Any, typer.main.get_command(app))
    found = {}
    for name, command in root.commands.items():
        for sub, leaf in getattr(command, "commands", {None: command}).items():
            found[f"{name} {sub}" if sub else name] = leaf
    return found


@pytest.mark.parametrize("page", list(ref.PAGES))
def test_committed_reference_page_is_what_the_code_generates(page):
    committed = REPO / ref.FOLDER / page
    assert committed.is_file(), f"{committed} is missing: run python -m jvae.cli.reference"
    assert committed.read_text(encoding="utf-8") == ref.PAGES[page](), (
        f"{ref.FOLDER / page} is out of date: run python -m jvae.cli.reference"
    )


def test_a_changed_preset_field_or_command_makes_its_page_stale(monkeypatch):
    from jvae.modeling.presets import TrainConfig

    folder = REPO / ref.FOLDER
    monkeypatch.setattr(TrainConfig.model_fields["lr"], "title", "a meaning nobody regenerated")
    train = next(c for c in app.registered_commands if c.name == "train")
    monkeypatch.setattr(train, "epilog", "Examples:\njvae train --preset changed")
    assert set(ref.stale(folder)) == {"commands.md", "preset-fields.md"}


def test_reference_command_checks_then_writes_the_pages(tmp_path, capsys):
    assert ref.main(["--check", str(tmp_path)]) == 1
    assert "out of date" in capsys.readouterr().err
    assert ref.main([str(tmp_path)]) == 0
    assert ref.main(["--check", str(tmp_path)]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(ref.PAGES)


def test_every_preset_field_and_option_is_in_the_reference():
    from jvae.modeling.presets import DataConfig, ModelConfig, TrainConfig

    fields = ref.PAGES["preset-fields.md"]()
    for section, model in (("data", DataConfig), ("model", ModelConfig), ("train", TrainConfig)):
        for name in model.model_fields:
            assert f"`{section}.{name}`" in fields
    commands = ref.PAGES["commands.md"]()
    for path, command in _commands().items():
        assert f"## `jvae {path}`" in commands
        for param in command.params:
            if param.param_type_name == "option" and param.name != "help" and not param.hidden:
                assert f"`{param.opts[0]}`" in commands, (path, param.opts)


def test_command_summaries_are_one_line_and_main_commands_show_examples():
    for path, command in _commands().items():
        summary = (command.help or "").strip().split("\n\n")[0]
        assert summary and "\n" not in summary and len(summary) <= 64, (path, summary)
    for name in MAIN_COMMANDS:
        epilog = _commands()[name].epilog or ""
        examples = epilog.strip().splitlines()
        assert examples[0] == "Examples:" and len(examples) >= 2, name
        assert all(line.startswith(f"jvae {name} ") and len(line) <= 76 for line in examples[1:]), name


def test_readme_is_a_landing_page_whose_links_resolve():
    readme = REPO / "README.md"
    assert readme.stat().st_size < 10 * 1024, f"README.md is {readme.stat().st_size} bytes"
    text = readme.read_text(encoding="utf-8")
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [t for t in targets if "://" not in t and not t.startswith("mailto:")]
    assert local, "README links into the manual"
    for target in local:
        assert (REPO / target).exists(), f"README links to {target}, which does not exist"


def _project_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True)
    if listed.returncode == 0 and listed.stdout:
        return [REPO / name for name in listed.stdout.decode().split("\0") if name]
    skip = {".git", ".venv", "site", "__pycache__", "build", "dist"}  # a source tree without git (an sdist)
    return [p for p in REPO.rglob("*") if p.is_file() and not skip & set(p.relative_to(REPO).parts)]


def test_no_project_file_refers_to_files_outside_the_project():
    offenders = []
    for path in _project_files():
        if path.is_file():
            data = path.read_bytes()
            offenders += [f"{path.relative_to(REPO)}: {word}" for word in OUTSIDE if word.encode() in data]
    assert not offenders, offenders


def test_every_manual_page_is_in_the_navigation():
    yaml = pytest.importorskip("yaml")
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text(encoding="utf-8"))

    def pages(node: Any) -> list[str]:
        if isinstance(node, str):
            return [node]
        if isinstance(node, list):
            return [p for item in node for p in pages(item)]
        return [p for value in node.values() for p in pages(value)]

    listed = set(pages(config["nav"]))
    on_disk = {str(p.relative_to(REPO / "docs")) for p in (REPO / "docs").rglob("*.md")}
    on_disk -= {p for p in on_disk if p.startswith("gallery/")}  # tables the results page includes
    assert listed == on_disk
