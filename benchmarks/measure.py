"""Timing helpers and the figures a benchmark run collects (one CSV row each)."""

import csv
import io
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fashionnet.core import atomic


def timed(function: Callable[[], Any]) -> tuple[float, Any]:
    """Wall seconds of one call, and its result."""
    start = time.perf_counter()
    result = function()
    return time.perf_counter() - start, result


def median_time(function: Callable[[], Any], repeats: int) -> float:
    """Median wall seconds over `repeats` calls (a shared machine makes single calls noisy)."""
    return statistics.median(timed(function)[0] for _ in range(repeats))


@dataclass(frozen=True)
class Figure:
    name: str
    value: float | int | str
    unit: str
    description: str


class Figures:
    """Named measurements, kept in the order they were taken."""

    def __init__(self) -> None:
        self._figures: dict[str, Figure] = {}

    def add(self, name: str, value: float | int | str, unit: str, description: str) -> None:
        self._figures[name] = Figure(name, value, unit, description)

    def __contains__(self, name: str) -> bool:
        return name in self._figures

    def __getitem__(self, name: str) -> float | int | str:
        return self._figures[name].value

    def names(self) -> list[str]:
        """The figures' names, in the order they were taken."""
        return list(self._figures)

    def csv_text(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["figure", "value", "unit", "description"])
        for figure in self._figures.values():
            value = f"{figure.value:.6g}" if isinstance(figure.value, float) else figure.value
            writer.writerow([figure.name, value, figure.unit, figure.description])
        return buffer.getvalue()

    def write_csv(self, path: Path) -> None:
        atomic.write_text(path, self.csv_text())

    @classmethod
    def read_csv(cls, path: Path) -> "Figures":
        """Figures back from a file `write_csv` wrote (numbers become numbers again)."""
        figures = cls()
        with open(path, newline="", encoding="utf-8") as file:
            for row in csv.DictReader(file):
                value = _number(row["value"])
                figures.add(row["figure"], value, row["unit"], row["description"])
        return figures


def _number(text: str) -> float | int | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text
