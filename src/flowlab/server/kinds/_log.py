"""An append-only log of small integer rows in one numpy array: how task kinds keep every counted answer of a
live item compactly (12 bytes an answer of three int32 columns, not a Python object each)."""

from __future__ import annotations

import numpy as np


class AnswerLog:
    """Rows of three int32 values, appended one at a time; the array doubles as it fills."""

    __slots__ = ("_rows", "n")

    def __init__(self, capacity: int = 64) -> None:
        self._rows = np.empty((capacity, 3), dtype=np.int32)
        self.n = 0

    def append(self, a: int, b: int, c: int) -> None:
        if self.n == len(self._rows):
            grown = np.empty((2 * len(self._rows), 3), dtype=np.int32)
            grown[: self.n] = self._rows
            self._rows = grown
        self._rows[self.n] = (a, b, c)
        self.n += 1

    @property
    def rows(self) -> np.ndarray:
        return self._rows[: self.n]

    def slice(self, start: int, stop: int) -> list[tuple[int, int, int]]:
        return [(int(a), int(b), int(c)) for a, b, c in self._rows[start:stop]]
