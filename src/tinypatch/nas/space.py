"""MCUNet's search space over :class:`~tinypatch.frontends.spec.NetSpec`.

A candidate is a :class:`Genome`: one value per gene of the space, in :attr:`SearchSpace.genes`
order. The genes are the input resolution, the stem and first-block widths, and per stage the
depth and, for every block slot of the stage, kernel, expand ratio and width (slots beyond the
stage's depth are kept, unused, as in OFA's encoding). The backbone is MCUNet's (ProxylessNAS /
MobileNetV2 layout, as ``mcunet-in4``): conv 3x3/2 32, MB1 k3 16, stages of 24, 40, 80, 96 and
192 channels (strides 2, 2, 2, 1, 2; depth {2,3,4}), one 320-channel block, pool, FC. A block's
width scales its output channels (rounded to a multiple of 8 as MobileNetV2 does); a stride-1
block whose input and output channels agree gets a residual shortcut.

:meth:`SearchSpace.sample`, :meth:`SearchSpace.mutate` (each gene resampled with probability
``prob``) and :meth:`SearchSpace.crossover` (each gene from either parent) take a
``random.Random``, so a seed fixes every candidate.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from tinypatch.errors import UsageError
from tinypatch.frontends.spec import BlockSpec, NetSpec
from tinypatch.frontends.synth import make_divisible

Genome = tuple[float, ...]  # one value per gene (ints stored as floats compare equal: 3 == 3.0)

# (base output channels, stride of the first block, depth choices) per stage (MCUNet / ProxylessNAS)
MCUNET_STAGES: tuple[tuple[int, int, tuple[int, ...]], ...] = (
    (24, 2, (2, 3, 4)), (40, 2, (2, 3, 4)), (80, 2, (2, 3, 4)), (96, 1, (2, 3, 4)), (192, 2, (2, 3, 4)),
    (320, 1, (1,)))


@dataclass(frozen=True)
class SearchSpace:
    """The choices of every gene; the defaults are MCUNetV2's (App. B) on MCUNet's backbone."""

    kernels: tuple[int, ...] = (3, 5, 7)
    expands: tuple[int, ...] = (3, 4, 6)
    widths: tuple[float, ...] = (0.5, 0.75, 1.0)
    resolutions: tuple[int, ...] = (96, 128, 160, 192, 224, 256)
    stages: tuple[tuple[int, int, tuple[int, ...]], ...] = MCUNET_STAGES
    stem_channels: int = 32
    first_channels: int = 16
    base_width: float = 1.0  # multiplies every channel count before a block's width
    num_classes: int = 1000
    name: str = "mcunet"
    genes: tuple[tuple[str, tuple[float, ...]], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for what, values in (("kernels", self.kernels), ("expands", self.expands), ("widths", self.widths),
                             ("resolutions", self.resolutions)):
            if not values or any(not isinstance(v, (int, float)) or isinstance(v, bool) or v <= 0 for v in values):
                raise UsageError(f"search space: {what} must be a non-empty list of positive numbers")
        if any(k % 2 == 0 for k in self.kernels):
            raise UsageError("search space: kernels must be odd")
        if not self.stages or any(not d or min(d) < 1 for _, _, d in self.stages):
            raise UsageError("search space: every stage needs depth choices >= 1")
        if self.base_width <= 0 or self.num_classes < 1:
            raise UsageError("search space: base_width and num_classes must be positive")
        genes: list[tuple[str, tuple[float, ...]]] = [
            ("resolution", self.resolutions), ("stem.width", self.widths), ("first.width", self.widths)]
        for s, (_, _, depths) in enumerate(self.stages):
            genes.append((f"stage{s}.depth", depths))
            for i in range(max(depths)):
                genes += [(f"stage{s}.{i}.kernel", self.kernels), (f"stage{s}.{i}.expand", self.expands),
                          (f"stage{s}.{i}.width", self.widths)]
        object.__setattr__(self, "genes", tuple(genes))

    # --- the evolution operators --------------------------------------------------------------
    def sample(self, rng: random.Random) -> Genome:
        return tuple(rng.choice(choices) for _, choices in self.genes)

    def mutate(self, genome: Genome, rng: random.Random, prob: float = 0.1) -> Genome:
        """Each gene resampled (from all its choices) with probability ``prob``."""
        return tuple(rng.choice(choices) if rng.random() < prob else v
                     for v, (_, choices) in zip(genome, self.genes, strict=True))

    def crossover(self, a: Genome, b: Genome, rng: random.Random) -> Genome:
        """Each gene taken from ``a`` or ``b`` with equal probability."""
        return tuple(x if rng.random() < 0.5 else y for x, y in zip(a, b, strict=True))

    # --- genome <-> spec --------------------------------------------------------------------
    def check(self, genome: Any) -> Genome:
        """``genome`` as a tuple if every gene holds one of its choices (UsageError otherwise)."""
        if not isinstance(genome, (list, tuple)) or len(genome) != len(self.genes):
            raise UsageError(f"a {self.name} genome has {len(self.genes)} genes")
        for v, (name, choices) in zip(genome, self.genes):
            if v not in choices or isinstance(v, bool):
                raise UsageError(f"gene {name} = {v!r} is not one of {list(choices)}")
        return tuple(genome)

    def channels(self, base: int, width: float) -> int:
        return make_divisible(base * self.base_width * width, 8)

    def to_spec(self, genome: Genome) -> NetSpec:
        """The network a genome describes (unused block slots dropped)."""
        g = dict(zip((n for n, _ in self.genes), genome, strict=True))
        stem = self.channels(self.stem_channels, g["stem.width"])
        cin = self.channels(self.first_channels, g["first.width"])
        blocks = [BlockSpec(cin, 3, 1, 1, shortcut=cin == stem)]
        for s, (base, stride, _) in enumerate(self.stages):
            for i in range(int(g[f"stage{s}.depth"])):
                p = f"stage{s}.{i}."
                out, st = self.channels(base, g[p + "width"]), stride if i == 0 else 1
                e = g[p + "expand"]
                blocks.append(BlockSpec(out, int(g[p + "kernel"]), st, int(e) if float(e).is_integer() else e,
                                        shortcut=st == 1 and out == cin))
                cin = out
        return NetSpec(f"{self.name}-search", int(g["resolution"]), stem, tuple(blocks), None,
                       num_classes=self.num_classes, source=f"tinypatch search ({self.name} space)")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "kernels": list(self.kernels), "expands": list(self.expands),
                "widths": list(self.widths), "resolutions": list(self.resolutions),
                "stages": [[c, s, list(d)] for c, s, d in self.stages], "stem_channels": self.stem_channels,
                "first_channels": self.first_channels, "base_width": self.base_width,
                "num_classes": self.num_classes}


def mcunet_space(**changes: Any) -> SearchSpace:
    """MCUNetV2's space (ImageNet, 1000 classes); ``changes`` override fields, e.g. ``resolutions``."""
    return SearchSpace(**changes)


def vww_space(**changes: Any) -> SearchSpace:
    """The same space for a 2-class task (visual wake words) on small boards: half the channels,
    and resolutions 48, 64 and 80 besides MCUNet's 96-256 (below 96 the only ones at which
    a network of this space fits 32 kB layer by layer)."""
    return SearchSpace(**{"base_width": 0.5, "num_classes": 2,
                          "resolutions": (48, 64, 80, 96, 128, 160, 192, 224, 256), "name": "mcunet-vww", **changes})


SPACES = {"mcunet": mcunet_space, "mcunet-vww": vww_space}
