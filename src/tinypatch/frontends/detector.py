"""An MCUNet person-detector-like int8 graph: MCUNet backbone, FPN with nearest upsampling, three heads.

Layout (``build_detector``), as in MCUNet's YOLO-style person detector:

- ``stem`` and ``blocks.{i}``: MCUNet inverted-residual blocks (expand, depthwise, project, ADD
  shortcut) down to stride 32; the outputs of the last block at strides 8, 16 and 32 are the
  FPN's C3, C4 and C5;
- ``fpn.p5``: 1x1 conv of C5, then a spatial-pyramid MAX_POOL_2D branch added back (``fpn.spp``);
- three heads, coarsest first, each a depthwise 3x3 + 1x1 conv giving ``anchors * (5 + classes)``
  channels (``head{k}.out``, no activation). P4 = RESIZE_NEAREST_NEIGHBOR(P5) + 1x1 conv of C4,
  P3 likewise from P4 and C3. The first two outputs are made in the middle of the graph (their
  ops come before the finer levels' ops), the third by the last op.

Graph outputs, in order: stride 32, 16, 8. Weights come from
:class:`~tinypatch.frontends.synth.Builder` (deterministic, synthetic).
"""

from __future__ import annotations

from dataclasses import dataclass

from tinypatch.errors import ModelLoadError
from tinypatch.frontends.synth import Builder, make_divisible
from tinypatch.ir import Graph

# MCUNet-style blocks: (expand ratio, kernel, stride, out channels); a stride-1 block with equal
# channels has an identity shortcut. The last block of each stride is C3 / C4 / C5.
_BLOCKS = ((1, 3, 1, 8), (4, 3, 2, 16), (3, 3, 1, 16), (4, 5, 2, 24), (3, 3, 1, 24), (3, 5, 1, 24),
           (4, 5, 2, 40), (4, 3, 1, 40), (4, 3, 1, 48), (5, 5, 2, 96), (4, 3, 1, 96))


@dataclass(frozen=True)
class DetectorSpec:
    name: str
    height: int
    width: int
    channels: float = 1.0  # width multiplier of the backbone and FPN
    fpn: int = 48  # FPN channels at width 1.0
    anchors: int = 3
    classes: int = 1


def build_detector(spec: DetectorSpec, *, seed: int = 0, resolution: int | tuple[int, int] | None = None) -> Graph:
    """The detector of the module docstring (``resolution``: square size or (height, width))."""
    h, w = (spec.height, spec.width) if resolution is None else (
        (resolution, resolution) if isinstance(resolution, int) else tuple(resolution))
    if h < 32 or w < 32:
        raise ModelLoadError(f"{spec.name}: the input must be at least 32x32 (five stride-2 layers), got {h}x{w}")

    def ch(c: float) -> int:
        return make_divisible(c * spec.channels, 8)

    b = Builder(spec.name, seed)
    x = b.input((1, h, w, 3))
    with b.block("stem"):
        x = b.conv(x, ch(16), 3, 2, name="stem", role="stem")
    levels: dict[int, str] = {}  # stride -> last feature map at that stride
    stride = 2
    for i, (t, k, s, c) in enumerate(_BLOCKS):
        n, cin, cout = f"blocks.{i}", b.shape(x)[3], ch(c)
        with b.block(n):
            y = b.conv(x, cin * t, 1, name=f"{n}.expand", role="expand") if t != 1 else x
            y = b.depthwise(y, k, s, name=f"{n}.dw")
            y = b.conv(y, cout, 1, act="NONE", name=f"{n}.project", role="project")
            x = b.add(y, x, name=f"{n}.add") if s == 1 and cin == cout else y
        stride *= s
        levels[stride] = x
    f = ch(spec.fpn)
    outputs = []
    with b.block("fpn"):
        p = b.conv(levels[32], f, 1, name="fpn.p5", role="fpn")
        p = b.add(p, b.pool(p, "max", 5, 1, padding="SAME", name="fpn.spp.pool"), name="fpn.spp", act="RELU6",
                  role="fpn")
    for k, lvl in enumerate((32, 16, 8), 1):
        with b.block(f"head{k}"):
            if lvl != 32:
                lat = b.conv(levels[lvl], f, 1, name=f"fpn.lat{lvl}", role="fpn")
                up = b.resize_nearest(p, b.shape(lat)[1:3], name=f"fpn.up{lvl}")
                p = b.add(up, lat, name=f"fpn.p{lvl}", act="RELU6", role="fpn")
            y = b.depthwise(p, 3, 1, name=f"head{k}.dw", role="head")
            outputs.append(b.conv(y, spec.anchors * (5 + spec.classes), 1, act="NONE", name=f"head{k}.out",
                                  role="head"))
    g = b.finish(outputs)
    g.meta["resolution"] = (h, w)
    return g


DETECTORS = {
    "mcunet-det": DetectorSpec("mcunet-det", 128, 160),
    "mcunet-det-s": DetectorSpec("mcunet-det-s", 64, 80, channels=0.5),
}
