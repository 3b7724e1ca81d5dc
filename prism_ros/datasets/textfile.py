"""Reading the plain-text data files of the datasets (CSV / TUM lists and trajectories)."""

from __future__ import annotations

from typing import Iterator, Tuple

__all__ = ["data_lines"]


def data_lines(path) -> Iterator[Tuple[int, str]]:
    """``(line number, stripped text)`` of each line of ``path`` that is neither blank nor a
    ``#`` comment (UTF-8)."""
    with open(path, "r", encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if line and not line.startswith("#"):
                yield n, line
