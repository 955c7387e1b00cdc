"""A simulated static arena: one byte array, buffers at planned offsets, checked byte by byte.

Every activation the plan executor keeps lives in :attr:`Arena.memory` at the offset the
planner gave it. Allocation checks the bounds and that no live buffer overlaps, so a wrong
plan fails loudly. The executor reports every array it reads from the arena
(:meth:`Arena.read`) and every one it writes (:meth:`Arena.wrote`): a byte is readable only
between a write and the free of its buffer (freed bytes are poisoned), so a read of a freed
or never-written byte raises, and :attr:`Arena.touched_high_water` is one past the highest
byte actually read or written, measured from the bytes, not from the planner's offsets.
Claims are rounded up to the arena's alignment, as a C arena reserves aligned slots.

:class:`IdArena` is the same arena holding provenance (which tensor byte each byte holds) instead
of values; :class:`ArenaEffect` records what a walk on it did (claims, validity, high-water mark),
to apply to a run's arena without walking.
"""

from __future__ import annotations

import math

import numpy as np

from tinypatch.errors import PlanError

POISON = 0xA5  # what a freed byte holds


class Arena:
    def __init__(self, size: int, alignment: int = 16) -> None:
        self.size = size
        self.alignment = alignment
        self.memory = np.full(size, POISON, np.uint8)
        self.valid = np.zeros(size, bool)  # written and not freed since
        self._end = 0  # one past the highest byte read or written
        self._views: dict[tuple, tuple[np.ndarray, int]] = {}  # (start, shape, strides, itemsize) -> (valid mask, end)
        self.live: dict[str, tuple[int, int]] = {}
        self._shapes: dict[tuple, np.ndarray] = {}  # (claim, shape, dtype) -> the view :meth:`view` made of it
        self._base = self.memory.__array_interface__["data"][0]

    @property
    def touched_high_water(self) -> int:
        """One past the highest byte read or written (0 when none was)."""
        return self._end

    def alloc(self, name: str, offset: int, nbytes: int) -> None:
        """Claim ``[offset, offset + nbytes)`` for buffer ``name``."""
        nbytes = -(-nbytes // self.alignment) * self.alignment
        end = offset + nbytes
        if offset < 0 or end > self.size:
            raise PlanError(f"buffer {name!r} [{offset}, {end}) overflows the {self.size}-byte arena")
        for other, (o, n) in self.live.items():
            if o < end and offset < o + n and other != name:
                raise PlanError(f"buffer {name!r} [{offset}, {end}) collides with live {other!r} [{o}, {o + n})")
        self.live[name] = (offset, nbytes)

    def free(self, name: str) -> None:
        """Release ``name``: its bytes are poisoned and unreadable until written again."""
        span = self.live.pop(name, None)
        if span is not None:
            self.memory[span[0]: span[0] + span[1]] = POISON
            self.valid[span[0]: span[0] + span[1]] = False

    def view(self, name: str, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The live buffer ``name`` seen as an array of ``shape`` (must fit its claimed bytes). A view is
        made once per claim, shape and dtype (the executor asks for the same ones tile after tile)."""
        span = self.live.get(name)
        if span is None:
            raise PlanError(f"buffer {name!r} is not live (freed or never allocated)")
        key = (span, shape, dtype)
        got = self._shapes.get(key)
        if got is None:
            offset, nbytes = span
            dt = np.dtype(dtype)
            count = math.prod(shape) * dt.itemsize
            if count > nbytes:
                raise PlanError(f"buffer {name!r} holds {nbytes} bytes, {count} requested")
            got = self._shapes[key] = self._shaped(self.memory[offset: offset + count], tuple(shape), dt)
        return got

    def _shaped(self, cells: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """``cells`` seen as an array of ``shape`` and ``dtype``."""
        return cells.view(dtype).reshape(shape)

    def _bytes(self, arr: np.ndarray) -> tuple[np.ndarray, int] | None:
        """:attr:`valid` seen at the bytes ``arr`` covers, and one past ``arr``'s last byte (None:
        ``arr`` is empty or not in the arena)."""
        start = arr.ctypes.data - self._base
        if arr.size == 0 or not 0 <= start < self.size:
            return None
        key = (start, arr.shape, arr.strides, arr.itemsize)
        got = self._views.get(key)
        if got is None:  # an executor makes the same views run after run: each is built once
            end = start + arr.itemsize  # views step forward: the last element is the highest
            for n, step in zip(arr.shape, arr.strides):
                end += (n - 1) * step
            got = self._views[key] = (np.ndarray(arr.shape + (arr.itemsize,), bool, self.valid, start,
                                                 arr.strides + (1,)), end)
        return got

    def read(self, arr: np.ndarray, what: str = "") -> np.ndarray:
        """Record a read of ``arr`` (a view into the arena, or any other array); every byte must
        hold a value written since its buffer was last freed. Returns ``arr``."""
        got = self._bytes(arr)
        if got is None:
            return arr
        if not got[0].all():
            start = arr.ctypes.data - self._base
            raise PlanError(f"read of a freed or never-written arena byte ({what or 'array'} at offset {start})")
        self._end = max(self._end, got[1])
        return arr

    def wrote(self, arr: np.ndarray) -> None:
        """Record that every byte of ``arr`` (a view into the arena) now holds a value."""
        got = self._bytes(arr)
        if got is not None:
            got[0][...] = True
            self._end = max(self._end, got[1])


class IdArena(Arena):
    """An arena of provenance: each cell says which byte the arena byte holds (a tensor byte's id,
    :data:`FOREIGN` for a byte written before whose provenance is not followed) or that it holds none
    (:data:`NOTHING`: never written; :data:`FREED`: written, then freed) instead of its value. An
    array of ``shape`` and ``dtype`` is seen as its bytes' cells, ``shape`` with the last axis times
    the item size (channels last: a window of pixels is a window of cells). Claims and frees are
    checked as in :class:`Arena`; a byte is valid where its cell holds a byte (:attr:`valid`), a
    read of any other raises, and the touched high-water mark is one past the last cell ever
    written (a read never raises it: every valid byte was written, and no cell written goes back
    to :data:`NOTHING`). Cells are ``dtype`` (int32 where every id is below its largest value:
    half the bytes to fill, copy and compare), :attr:`FOREIGN` that dtype's largest value."""

    NOTHING = -1
    FREED = -2

    def __init__(self, size: int, alignment: int = 16, dtype: type = np.int64) -> None:
        self.size = size
        self.alignment = alignment
        self.memory = np.full(size, self.NOTHING, dtype)
        self.FOREIGN = int(np.iinfo(dtype).max)  # above every id: a cell holds a byte where it is not negative
        self.live: dict[str, tuple[int, int]] = {}
        self._shapes: dict[tuple, np.ndarray] = {}
        self._end_before = 0
        self._base = self.memory.__array_interface__["data"][0]

    @classmethod
    def of(cls, arena: Arena, placed: list[tuple[int, np.ndarray]], dtype: type = np.int64) -> IdArena:
        """``arena``'s claims, validity and high-water mark, its valid bytes :data:`FOREIGN` but where
        ``placed`` (offset, ids) puts the ids of a tensor's bytes (where those bytes are valid)."""
        a = cls(arena.size, arena.alignment, dtype)
        a.live, a._end_before = dict(arena.live), arena._end
        a.memory[arena.valid] = a.FOREIGN
        for offset, ids in placed:
            cells = a.memory[offset: offset + ids.size]
            np.copyto(cells, ids.reshape(-1), where=arena.valid[offset: offset + ids.size])
        return a

    @property
    def valid(self) -> np.ndarray:  # type: ignore[override]
        """Which bytes hold a value (written and not freed since)."""
        return self.memory >= 0

    @property
    def touched_high_water(self) -> int:
        written = np.flatnonzero(self.memory != self.NOTHING)  # every byte written holds a byte, or FREED
        return max(self._end_before, int(written[-1]) + 1 if written.size else 0)

    def _shaped(self, cells: np.ndarray, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return cells.reshape(*shape[:-1], shape[-1] * dtype.itemsize) if shape else cells

    def free(self, name: str) -> None:
        span = self.live.pop(name, None)
        if span is not None:
            cells = self.memory[span[0]: span[0] + span[1]]
            np.putmask(cells, cells >= 0, self.FREED)  # cells holding a byte (FREED ones stay FREED)

    def read(self, arr: np.ndarray, what: str = "") -> np.ndarray:
        if arr.size and np.minimum.reduce(arr, None) < 0:  # an id map (outside the arena) holds no negative id
            start = (arr.ctypes.data - self._base) // self.memory.itemsize
            raise PlanError(f"read of a freed or never-written arena byte ({what or 'array'} at offset {start})")
        return arr

    def wrote(self, arr: np.ndarray) -> None:
        """Record that every byte of ``arr`` holds a value: cells that hold none (bytes recorded as
        written, not walked) are :data:`FOREIGN` from now on. (Cells written with ids say so
        themselves: a walk need not record them.)"""
        if arr.size and np.minimum.reduce(arr, None) < 0:  # (usually none: one reduction, no mask)
            np.copyto(arr, self.FOREIGN, where=arr < 0)


class ArenaEffect:
    """What a stretch of a run does to an arena whose every claim, read, write and free depends on the
    plan only (not on the values): recorded once from a walk of the stretch on provenance (an
    :class:`IdArena` made of the run's arena before it), applied to a run's arena found in the same
    state before (:meth:`applies`).

    The stretch may change the bytes of ``out`` (offset, size: the values the run writes itself) and
    poison the bytes it frees (every byte not valid after it holds :data:`POISON`, whatever the
    values); :attr:`replayable` is False when it left any other valid byte holding another byte
    than before."""

    def __init__(self, arena: Arena, walked: IdArena, before: np.ndarray, out: tuple[int, int] | None) -> None:
        """``arena``: the run's arena before the stretch; ``walked``: the id arena made of it, whose
        cells were ``before``, after the walk."""
        self.valid_before, self.live_before, self.end_before = arena.valid.copy(), dict(arena.live), arena._end
        self.valid, self.live, self.end = walked.valid, dict(walked.live), walked.touched_high_water
        self.invalid = ~self.valid
        other = (walked.memory != before) & self.valid
        if out is not None:
            other[out[0]: out[0] + out[1]] = False
        self.replayable = not other.any()

    def applies(self, arena: Arena) -> bool:
        """Is ``arena`` in the recorded state before the stretch (so the stretch does the same to it)?"""
        return (self.replayable and arena._end == self.end_before and arena.live == self.live_before
                and np.array_equal(arena.valid, self.valid_before))

    def apply(self, arena: Arena) -> None:
        """Do to ``arena`` what the recorded stretch did, but for the values of ``out``."""
        np.copyto(arena.memory, POISON, where=self.invalid)
        arena.valid[...] = self.valid
        arena.live = dict(self.live)
        arena._end = self.end
