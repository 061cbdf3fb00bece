"""Reading what jvae keeps in run, report and study folders: metrics.jsonl, preset.toml, run.json,
report.json, study.json, stack files and a tracker's run id.

These files are jvae's own, but a crash, a disk error or a hand edit can leave anything in them, and
`compare`, `plot`, `sweep` and resume read them back. Each is read here only: bounded in size and nesting,
then checked against a pydantic model of what jvae writes, so a damaged file is one `RunFileError` line
naming the file and what is wrong, never a traceback from deep inside whichever command read it.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jvae.base.errors import JvaeError

JSON_MAX_BYTES = 16 * 2**20  # a report, a record, a manifest: kilobytes when jvae writes them
METRICS_MAX_BYTES = 512 * 2**20  # a metrics log: a line per log_every steps
NESTING_MAX = 64  # JSON and TOML depth; jvae's own files nest a few levels

Model = TypeVar("Model", bound=BaseModel)


class RunFileError(JvaeError):
    """A file in a run, report or study folder that is not what jvae writes there."""


class _Record(BaseModel):
    """Fields jvae relies on are checked; others (a newer version's, a model kind's own terms) are kept."""

    model_config = ConfigDict(extra="allow", strict=True)


class _Exact(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# ----------------------------------------------------------------------------------------------- models


class TrainLine(_Record):
    step: int = Field(ge=0)
    split: Literal["train"] = "train"
    loss: float
    recon: float
    kl_cont: list[float]
    kl_disc: list[float]
    images_per_sec: float = 0.0
    capacity_cont: float = 0.0
    capacity_disc: float = 0.0


class EvalLine(_Record):
    step: int = Field(ge=0)
    split: Literal["eval"]
    elbo: float


class RunRecord(_Record):
    """run.json: how a study's run went the last time it was attempted."""

    name: str | None = None
    state: str | None = None
    returncode: int | None = None
    seconds: float = Field(0.0, ge=0, allow_inf_nan=False)


class ReportSettings(_Record):
    checkpoint: str | None = None
    seed: int | None = None


class ElboTerms(_Record):
    kl_continuous: float | None = None
    kl_discrete: float | None = None


Scalar = float | int | str | bool | None
Metric = Scalar | list[Any] | dict[str, Any]


class ReportFile(_Record):
    settings: ReportSettings = Field(default_factory=ReportSettings)
    metrics: dict[str, Metric] = Field(default_factory=dict)

    @field_validator("metrics")
    @classmethod
    def _elbo_terms_are_numbers(cls, metrics: dict[str, Metric]) -> dict[str, Metric]:
        elbo = metrics.get("elbo")
        if isinstance(elbo, dict):
            ElboTerms.model_validate(elbo)
        return metrics


class RunSelection(_Record):
    """A run's `udr.json`: its scores against the other runs of its setting, and whether it was chosen."""

    udr: float
    udr_lasso: float
    group: list[str]
    selected: bool


class RunEntry(_Exact):
    name: str
    preset: str
    seed: int = Field(ge=0)
    overrides: list[str]

    @field_validator("name")
    @classmethod
    def _inside_the_study(cls, name: str) -> str:
        if not name or name in (".", "..") or "/" in name or "\x00" in name:
            raise ValueError("a run's folder must be a plain name inside the study's folder")
        return name


class StudyDefinition(_Exact):
    presets: list[str]
    seeds: list[int]
    grid: dict[str, list[str]]
    sets: list[str] = Field(default_factory=list)
    evaluate: bool = False
    metrics: list[str] = Field(default_factory=list)


class Manifest(_Record):
    study: StudyDefinition
    runs: list[RunEntry]


class PresetSummary(_Record):
    """What a reader of a run's preset.toml needs without validating the whole preset (which a newer or
    older jvae may have written with other fields)."""

    kind: str = "jointvae"
    seed: int | None = None


# ----------------------------------------------------------------------------------------------- reading


def _problem(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"])
    return f"{where}: {first['msg']}" if where else first["msg"]


def read_bytes(path: Path, limit: int) -> bytes:
    """The file, if it is no larger than `limit` bytes (read no further than that)."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise RunFileError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(data) > limit:
        raise RunFileError(f"{path}: larger than {limit // 2**20} MiB; not a file jvae wrote")
    return data


def nesting_depth(text: str) -> int:
    """The deepest nesting of brackets outside strings, found before a parser recurses into it."""
    deepest = depth = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def parse_json(text: str, source: str) -> Any:
    """JSON text of at most NESTING_MAX levels; NaN and infinities as Python writes them are accepted."""
    if nesting_depth(text) > NESTING_MAX:
        raise RunFileError(f"{source}: nested deeper than {NESTING_MAX} levels; not a file jvae wrote")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        detail = exc.msg if isinstance(exc, json.JSONDecodeError) else "nested too deeply"
        raise RunFileError(f"{source}: not valid JSON ({detail})") from None


def read_json(path: Path, limit: int = JSON_MAX_BYTES) -> Any:
    try:
        text = read_bytes(path, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise RunFileError(f"{path}: not text (not valid UTF-8)") from None
    return parse_json(text, str(path))


def read_model(path: Path, model: type[Model], limit: int = JSON_MAX_BYTES) -> Model:
    """A JSON file checked against `model`."""
    body = read_json(path, limit)
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise RunFileError(f"{path}: not a jvae {path.name} ({_problem(exc)})") from None


def read_toml(path: Path, limit: int = JSON_MAX_BYTES) -> dict[str, Any]:
    try:
        text = read_bytes(path, limit).decode("utf-8")
    except UnicodeDecodeError:
        raise RunFileError(f"{path}: not text (not valid UTF-8)") from None
    if nesting_depth(text) > NESTING_MAX:
        raise RunFileError(f"{path}: nested deeper than {NESTING_MAX} levels; not a file jvae wrote")
    try:
        return tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise RunFileError(f"{path}: not valid TOML ({str(exc).splitlines()[0][:120]})") from None


def read_preset_summary(path: Path) -> PresetSummary:
    """The model kind and seed of a run's preset.toml."""
    raw = read_toml(path)
    loss, train = raw.get("loss", {}), raw.get("train", {})
    if not isinstance(loss, dict) or not isinstance(train, dict):
        raise RunFileError(f"{path}: not a jvae preset (loss and train must be tables)")
    fields = {key: value for key, value in (("kind", loss.get("kind")), ("seed", train.get("seed"))) if value}
    try:
        return PresetSummary.model_validate(fields)
    except ValidationError as exc:
        raise RunFileError(f"{path}: not a jvae preset ({_problem(exc)})") from None


def read_metrics(path: Path) -> tuple[list[TrainLine], list[EvalLine]]:
    """A run's (training lines, evaluation lines). A line that is not JSON is skipped, as a crash can cut
    the last one short; a JSON line that lacks a field jvae writes, or holds the wrong type, is damage."""
    text = read_bytes(path, METRICS_MAX_BYTES).decode("utf-8", errors="replace")
    train: list[TrainLine] = []
    evaluations: list[EvalLine] = []
    for number, line in enumerate(text.splitlines(), 1):
        if nesting_depth(line) > NESTING_MAX:
            raise RunFileError(f"{path}: line {number} is nested deeper than {NESTING_MAX} levels")
        try:
            record = json.loads(line)
        except (json.JSONDecodeError, RecursionError):
            continue
        if not isinstance(record, dict):
            raise RunFileError(f"{path}: line {number} is not a record (a JSON object)")
        try:
            if record.get("split", "train") == "eval":
                evaluations.append(EvalLine.model_validate(record))
            else:
                train.append(TrainLine.model_validate(record))
        except ValidationError as exc:
            raise RunFileError(f"{path}: line {number}: {_problem(exc)}") from None
    return train, evaluations


def read_run_record(path: Path) -> RunRecord:
    return read_model(path, RunRecord)


def read_report(path: Path) -> ReportFile:
    return read_model(path, ReportFile)


def read_manifest(path: Path) -> Manifest:
    return read_model(path, Manifest)


MLFLOW_RUN_ID = re.compile(r"[0-9a-f]{32}")


def read_mlflow_run_id(path: Path) -> str:
    """The MLflow run a resumed run continues: 32 hexadecimal digits, as MLflow makes them."""
    try:
        text = read_bytes(path, 1024).decode("ascii").strip()
    except UnicodeDecodeError:
        text = ""
    if not MLFLOW_RUN_ID.fullmatch(text):
        raise RunFileError(
            f"{path}: not an MLflow run id (32 hexadecimal digits); remove it to start a new one"
        )
    return text
