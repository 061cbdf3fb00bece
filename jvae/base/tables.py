"""CSV files for spreadsheets: the one writer of jvae's tables (compare's runs and summaries, a run's
checkpoint history, encode's codes).

A spreadsheet opening a CSV file runs a cell that begins with `=`, `+`, `-` or `@` (or a tab or carriage
return before one) as a formula, and run names, unit names, metric names and image paths come from users'
files. Such a text cell is written with a single quote in front, which spreadsheets show as text; numbers
are written as numbers. The JSON written beside each table keeps every value exactly.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from jvae.base.files import write_text

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    """A value as the CSV cell a spreadsheet shows as written: text that could start a formula is quoted."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class CsvWriter:
    """Rows written one at a time to an open text file (encode streams its codes), every cell guarded."""

    def __init__(self, handle: IO[str]) -> None:
        self.writer = csv.writer(handle, lineterminator="\n")

    def row(self, values: Iterable[Any]) -> None:
        self.writer.writerow([cell(value) for value in values])


def csv_text(rows: Iterable[Mapping[str, Any]], header: Sequence[str]) -> str:
    """Rows as CSV under `header` (a missing value empty)."""
    buffer = io.StringIO()
    writer = CsvWriter(buffer)
    writer.row(header)
    for row in rows:
        writer.row(row.get(name) for name in header)
    return buffer.getvalue()


def write_csv(path: Path, rows: Iterable[Mapping[str, Any]], header: Sequence[str]) -> None:
    write_text(path, csv_text(rows, header))
