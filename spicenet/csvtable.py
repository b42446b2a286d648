"""Reading the metrics CSV files runs write (torch-free, so reports and tools can read runs without torch)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any


def parse_cell(v: str | None) -> Any:
    """A CSV cell as a number when it is one (int when written as an integer), None when empty, else the text."""
    if v is None or v == "":
        return None
    try:
        f = float(v)
    except ValueError:
        return v
    return int(f) if f.is_integer() and "." not in v and "e" not in v.lower() else f


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a CSV file with a header line, cells parsed by :func:`parse_cell`; [] when the file is missing."""
    path = Path(path)
    if not path.is_file():
        return []
    with open(path, newline="") as fh:
        return [{k: parse_cell(v) for k, v in r.items()} for r in csv.DictReader(fh)]
