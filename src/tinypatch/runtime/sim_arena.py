"""A simulated static arena: one byte array, buffers at planned offsets, checked as they live.

Every activation the plan executor keeps lives in :attr:`Arena.memory` at the offset the
planner gave it. Allocation checks the bounds and that no live buffer overlaps, so a wrong
plan fails loudly, and :attr:`Arena.high_water` is the measured high-water mark. Claims are
rounded up to the arena's alignment, as a C arena reserves aligned slots.
"""

from __future__ import annotations

import numpy as np

from tinypatch.errors import PlanError


class Arena:
    def __init__(self, size: int, alignment: int = 16) -> None:
        self.size = size
        self.alignment = alignment
        self.memory = np.zeros(size, np.uint8)
        self.live: dict[str, tuple[int, int]] = {}
        self.high_water = 0

    def alloc(self, name: str, offset: int, nbytes: int) -> None:
        """Claim ``[offset, offset + nbytes)`` for buffer ``name``."""
        nbytes = -(-nbytes // self.alignment) * self.alignment
        end = offset + nbytes
        if offset < 0 or end > self.size:
            raise PlanError(f"buffer {name!r} [{offset}, {end}) overflows the {self.size}-byte arena")
        for other, (o, n) in self.live.items():
            if other != name and offset < o + n and o < end:
                raise PlanError(f"buffer {name!r} [{offset}, {end}) collides with live {other!r} [{o}, {o + n})")
        self.live[name] = (offset, nbytes)
        self.high_water = max(self.high_water, end)

    def free(self, name: str) -> None:
        self.live.pop(name, None)

    def view(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The live buffer ``name`` seen as an array of ``shape`` (must fit its claimed bytes)."""
        offset, nbytes = self.live[name]
        count = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        if count > nbytes:
            raise PlanError(f"buffer {name!r} holds {nbytes} bytes, {count} requested")
        return self.memory[offset: offset + count].view(dtype).reshape(shape)
