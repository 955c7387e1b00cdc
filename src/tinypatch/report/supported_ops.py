"""``docs/supported-ops.md`` from the operator table: every operator with its traits and limits.

Regenerate with ``python -m tinypatch.report.supported_ops [PATH]`` (default: print to stdout);
``tests/test_optable.py`` fails when the checked-in file is stale.
"""

from __future__ import annotations

import sys

from tinypatch.ir.optable import OPS, CTypes, InPlace, Region
from tinypatch.safeio import write_text

_REGION = {
    Region.WINDOW: "window", Region.PAD: "window (padding)", Region.IDENTITY: "point-wise",
    Region.CONCAT: "point-wise (channel axis)", Region.NEAREST: "gather (nearest)",
    Region.BILINEAR: "gather (bilinear)", Region.TRANSPOSE: "gather (transposed window)",
    Region.CHANNEL_SLICE: "point-wise (channel ranges)", Region.NONE: "no",
}
_INPLACE = {InPlace.NO: "no", InPlace.WINDOW: "raster, least safe shift", InPlace.ELEMENTWISE: "element-wise",
            InPlace.ALIAS: "same buffer", InPlace.CHANNELS: "channel range, shift 0"}
_C_TYPES = {CTypes.INT8: "int8", CTypes.MOVE: "int8, uint8, int32, float32", CTypes.QUANTIZE: "int8/float32 -> int8",
            CTypes.DEQUANTIZE: "int8 -> float32"}


def supported_ops_markdown() -> str:
    """The markdown text of ``docs/supported-ops.md``."""
    lines = [
        "# Supported operators",
        "",
        "Generated from `src/tinypatch/ir/optable.py` by `python -m tinypatch.report.supported_ops "
        "docs/supported-ops.md`; do not edit by hand.",
        "",
        "*in a patch stage*: how an output tile maps to the input it reads (`no`: the operator needs "
        "its whole input and runs layer by layer). *in place*: how it may overwrite an input it is the "
        "last reader of. *C*: the data types the C generator accepts and the C functions used.",
        "",
        "| operator | kind | in a patch stage | in place | quantization | C | limits |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in sorted(OPS):
        d = OPS[name]
        region = _REGION[d.region] + (", or ends a stage as a global average" if d.reduce.value != "no" else "")
        c = f"{_C_TYPES[d.c_types]}: " + (", ".join(f"`{f}`" for f in d.c_kernels) or "memmove / none")
        lines.append(f"| {name} | {d.kind.value} | {region} | {_INPLACE[d.inplace]} | {d.quantization} | {c} "
                     f"| {d.limits or '-'} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    text = supported_ops_markdown()
    if args:
        write_text(args[0], text)
    else:
        sys.stdout.write(text)


if __name__ == "__main__":
    main()
