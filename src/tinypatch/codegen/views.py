"""Windows into tensors as C expressions: pointer, 4-D dims and strides, NHWC row stride.

A whole-tensor operator gets full views; an operator inside a patch stage gets the window
of its tile, whose position comes from the stage's span tables at run time. Strides are in
elements and are 0 along size-1 dimensions, which gives numpy/TFLite broadcasting for free.
"""

from __future__ import annotations

from dataclasses import dataclass

from tinypatch.codegen.storage import Storage


@dataclass(frozen=True)
class View:
    tensor: str
    ptr: str  # typed pointer to the window's first element
    d4: tuple[str, str, str, str]  # window dims, right-aligned to 4-D
    s4: tuple[str, str, str, str]  # element strides (0 where the tensor's dim is 1)
    rs: str  # row stride in elements (NHWC: width of the layout x channels)
    c: int  # channels (last dimension)
    esize: int
    bounds: tuple[str, str] | None = None  # (start, end) of its buffer as char *, for TP_CHECK

    @property
    def h(self) -> str:
        return self.d4[1]

    @property
    def w(self) -> str:
        return self.d4[2]

    def dims(self) -> str:
        return "(const int32_t[4]){" + ", ".join(self.d4) + "}"

    def strides(self) -> str:
        return "(const int32_t[4]){" + ", ".join(self.s4) + "}"

    def check(self) -> str:
        """A TP_WINDOW statement checking the window lies in its buffer (host checks only)."""
        if self.bounds is None:
            return ""
        return (f"TP_WINDOW({self.ptr}, {self.h}, {self.w}, {self.rs}, {self.c}, {self.esize}, "
                f"{self.bounds[0]}, {self.bounds[1]});\n")


def align4(shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Right-align a shape of rank <= 4 to 4-D (leading 1s)."""
    s = (1,) * (4 - len(shape)) + tuple(shape)
    return s[0], s[1], s[2], s[3]


def contiguous_strides(shape4: tuple[int, int, int, int]) -> list[int]:
    s3 = 1
    s2 = shape4[3]
    s1 = shape4[2] * s2
    return [shape4[1] * s1, s1, s2, s3]


def full_view(storage: Storage, t: str) -> View:
    """The whole tensor ``t``."""
    tensor = storage.graph.tensors[t]
    shape = align4(tensor.shape)
    strides = [0 if d == 1 else s for d, s in zip(shape, contiguous_strides(shape))]
    bounds = None
    if storage.in_arena(t):
        raw = storage.raw(t)
        bounds = (raw, f"{raw} + {tensor.nbytes}")
    return View(t, storage.base(t), tuple(map(str, shape)), tuple(map(str, strides)),  # type: ignore[arg-type]
                str(shape[2] * shape[3]), shape[3], storage.esize(t), bounds)


@dataclass(frozen=True)
class Layout:
    """How a 4-D tensor is laid out during a stage: origin (tensor coordinates of the stored
    element 0, C expressions) and row width in pixels; ``size`` bytes of its buffer."""

    oy: str
    ox: str
    width: int
    size: int


def window_view(storage: Storage, t: str, layout: Layout, y0: str, x0: str, h: str, w: str) -> View:
    """The window of 4-D tensor ``t`` starting at tensor coordinates (y0, x0), h x w pixels."""
    tensor = storage.graph.tensors[t]
    _, th, tw, c = tensor.shape
    rs = layout.width * c
    offset = []
    if th > 1 and y0 != layout.oy:
        offset.append(f"(ptrdiff_t)(({y0}) - ({layout.oy})) * {rs}")
    if tw > 1 and x0 != layout.ox:
        offset.append(f"(ptrdiff_t)(({x0}) - ({layout.ox})) * {c}")
    ptr = f"({storage.base(t)} + {' + '.join(offset)})" if offset else storage.base(t)
    strides = ("0", str(rs) if th > 1 else "0", str(c) if tw > 1 else "0", "1" if c > 1 else "0")
    bounds = None
    if storage.in_arena(t):
        raw = storage.raw(t)
        bounds = (raw, f"{raw} + {layout.size}")
    return View(t, ptr, ("1", h, w, str(c)), strides, str(rs), c, storage.esize(t), bounds)


def nchw_window_view(storage: Storage, t: str, y0: str, x0: str, h: str, w: str) -> View:
    """The h x w window at (y0, x0) of a whole NCHW tensor ``t``, seen in NHWC order (dims
    1, h, w, C; a channel steps H * W elements): a TRANSPOSE to NHWC reading it (or from NHWC
    writing it) is a strided copy."""
    _, c, th, tw = storage.graph.tensors[t].shape
    offset = []
    if th > 1:
        offset.append(f"(ptrdiff_t)({y0}) * {tw}")
    if tw > 1:
        offset.append(f"(ptrdiff_t)({x0})")
    ptr = f"({storage.base(t)} + {' + '.join(offset)})" if offset else storage.base(t)
    strides = ("0", str(tw) if th > 1 else "0", "1" if tw > 1 else "0", str(th * tw) if c > 1 else "0")
    return View(t, ptr, ("1", h, w, str(c)), strides, str(tw), c, storage.esize(t))
