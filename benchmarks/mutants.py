"""Mutation testing: plant one bug at a time in a copy of the tree and run the part of the default
test suite that covers it; a mutant is *caught* when those tests fail.

Run: ``python benchmarks/mutants.py [--only ID ...] [--list] [--timeout S] [--json OUT]``
(``TINYPATCH_ASSETS`` as for the tests). Each mutant is one exact text replacement (the script
refuses to run if the text is not found exactly once, so a refactor cannot silently disarm it)
and names the test files it runs (``pytest -x``, in a temporary copy of src/, tests/ and tools/). It
prints a line per mutant and caught/total; exit status 1 when one survives.

The first five are the audit's table in issue 12; the others cover kernels, regions, the
arena, in-place operators, stream steps, the executor's halo caches, the search's cost model,
the code generator and the C kernels (reference, DSP).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = "src/tinypatch/"
C = PKG + "codegen/c/"


@dataclass(frozen=True)
class Mutant:
    id: str
    what: str
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = [
    # --- the audit's table (issue 12) ---------------------------------------------------------
    Mutant("fixedpoint-tie", "rounding_divide_by_pot: negative ties toward zero", PKG + "kernels/fixedpoint.py",
           "threshold = (mask >> 1) + (x < 0)", "threshold = (mask >> 1)",
           ("tests/test_kernels_fixedpoint.py", "tests/test_kernels_ops.py")),
    Mutant("regions-halo", "window input span one pixel short at its end", PKG + "analysis/regions.py",
           "hi = (b - 1) * self.stride - self.pad + self.extent", "hi = (b - 1) * self.stride - self.pad + self.extent - 1",
           ("tests/test_patch_properties.py", "tests/test_patch_exact.py")),
    Mutant("arena-conflict", "a buffer no longer conflicts at its last step", PKG + "planning/arena.py",
           "for t in range(b.start, b.end + 1):\n                self.live[t].append(i)",
           "for t in range(b.start, b.end):\n                self.live[t].append(i)",
           ("tests/test_arena.py",)),
    Mutant("inplace-block", "in-place write-ahead BLOCK 4 -> 3", PKG + "analysis/inplace_shift.py",
           "BLOCK = 4 ", "BLOCK = 3 ", ("tests/test_inplace.py",)),
    Mutant("c-requant-tie", "C reference requantization rounds negative ties up", C + "tp_kernels.c",
           "const int32_t threshold = (mask >> 1) + (x < 0);", "const int32_t threshold = (mask >> 1);",
           ("tests/test_codegen_ties.py",)),
    # --- Python kernels ----------------------------------------------------------------------------
    Mutant("py-avgpool-neg", "average pool rounds negative sums like positive ones", PKG + "kernels/pool.py",
           "neg = -((half - acc) // count)", "neg = (acc + half) // count",
           ("tests/test_kernels_ops.py", "tests/test_kernels_litert_ops.py")),
    Mutant("py-add-zp", "ADD ignores the first operand's zero point", PKG + "kernels/binary.py",
           "x1 = (a.astype(np.int64) - self.zp1) << self.LEFT_SHIFT\n        x2 = (b.astype(np.int64) - self.zp2) << self.LEFT_SHIFT\n        raw",
           "x1 = a.astype(np.int64) << self.LEFT_SHIFT\n        x2 = (b.astype(np.int64) - self.zp2) << self.LEFT_SHIFT\n        raw",
           ("tests/test_kernels_ops.py", "tests/test_kernels_litert_ops.py")),
    # --- tiles, executor, stream, in place, arena -----------------------------------------------------
    Mutant("tiles-overlap", "cached halo one position short", PKG + "planning/tiles.py",
           "return max((s[op_index].out[0] - s[op_index].need[0] for s in self.spans), default=0)",
           "return max((s[op_index].out[0] - s[op_index].need[0] - 1 for s in self.spans), default=0)",
           ("tests/test_patch_properties.py", "tests/test_patch_exact.py")),
    Mutant("exec-cache-rows", "cache: the second tile row does not get its kept rows back", PKG
           + "runtime/plan_executor.py", "if i > 0 and sh.out[0] > sh.need[0]:  # next tile row",
           "if i > 1 and sh.out[0] > sh.need[0]:  # next tile row",
           ("tests/test_patch_properties.py", "tests/test_patch_exact.py")),
    Mutant("stream-keep", "stream slide keeps one column too few", PKG + "planning/stream.py",
           "steps.append((producers[t], w1 - lo, lo - w0, 0, 0, 0, 0))",
           "steps.append((producers[t], w1 - lo - 1, lo - w0, 0, 0, 0, 0))",
           ("tests/test_stream.py",)),
    Mutant("inplace-px", "in-place shift prices input pixels at the output's width", PKG + "analysis/inplace_shift.py",
           "return int(np.max(written * out_px - lowest * in_px))", "return int(np.max(written * out_px - lowest * out_px))",
           ("tests/test_inplace.py",)),
    Mutant("inplace-row", "in-place shift not clipped at the row end (safe, but not the least)",
           PKG + "analysis/inplace_shift.py", "written = np.minimum(idx + block, (idx // mw.out_size + 1) * mw.out_size)",
           "written = idx + block", ("tests/test_inplace.py",)),
    Mutant("arena-poison", "simulated arena does not poison freed bytes", PKG + "runtime/sim_arena.py",
           "self.valid[span[0]: span[0] + span[1]] = False", "pass",
           ("tests/test_sim_arena.py",)),
    # --- search ------------------------------------------------------------------------------------------
    Mutant("optimal-lines", "search omits line buffers of two-column grids", PKG + "planning/optimal.py",
           "if nw > 1:  # rows kept", "if nw > 2:  # rows kept",
           ("tests/test_bruteforce_front.py", "tests/test_optimal.py")),
    # --- code generation and C kernels -----------------------------------------------------------------
    Mutant("codegen-pads", "tile calls get the bottom padding as the top", PKG + "codegen/schedule.py",
           'pads=(f"h{k}[{PAD0}]", f"w{k}[{PAD0}]"),\n                    win=',
           'pads=(f"h{k}[{PAD1}]", f"w{k}[{PAD0}]"),\n                    win=',
           ("tests/test_codegen.py::test_random_cnn_random_plan_is_exact",)),
    Mutant("c-shift-rows", "tp_shift_rows moves rows up starting from the last one", C + "tp_kernels.c",
           "if (delta >= 0) {\n        for (int r = 0; r < rows; r++)", "if (delta >= 0) {\n        for (int r = rows - 1; r >= 0; r--)",
           ("tests/test_codegen.py::test_rolling_cache_with_one_row_tiles_is_exact",
            "tests/test_codegen.py::test_random_cnn_random_plan_is_exact")),
    Mutant("c-conv-zp", "C reference conv ignores the input zero point", C + "tp_ref.h",
           "acc += wk[c] * (LOAD(px[c]) - zp_);", "acc += wk[c] * LOAD(px[c]);",
           ("tests/test_codegen_ties.py",)),
    Mutant("c-avgpool-neg", "C average pool rounds negative sums like positive ones", C + "tp_kernels.c",
           "v = sum > 0 ? (sum + half) / count : -((half - sum) / count);", "v = (sum + half) / count;",
           ("tests/test_codegen_ties.py",)),
    Mutant("c-add-shift", "C ADD shifts the second operand by the first's shift", C + "tp_kernels.c",
           "(1 << 20), p->m2), -p->sh2);", "(1 << 20), p->m2), -p->sh1);", ("tests/test_codegen_ties.py",)),
    Mutant("c-dsp-nmask", "DSP requantization drops the negative rounding mask", C + "tp_fast.c",
           "v = (v + q->rnd + ((v >> 31) & q->nmask)) >> q->rsh;", "v = (v + q->rnd) >> q->rsh;",
           ("tests/test_codegen_ties.py",)),
    Mutant("c-dsp-two", "DSP conv pairs pixels whose second window leaves the input", C + "tp_fast.c",
           "const int two = ox + 1 < ow && ix0 >= 0 && ix0 + sw + kw <= iw;",
           "const int two = ox + 1 < ow && ix0 >= 0 && ix0 + sw + kw <= iw + 1;",
           ("tests/test_codegen_ties.py",)),
    Mutant("c-write-ahead", "the Helium conv states a write-ahead of 3 pixels", C + "tp_fast_mve.c",
           "/* write-ahead: 4 output pixels", "/* write-ahead: 3 output pixels", ("tests/test_inplace.py",)),
    Mutant("c-shadow-write", "shadow build forgets the bytes a kernel writes", C + "tp_shadow.c",
           "if (a >= shadow_lo && a - shadow_lo < shadow_n) shadow_map[a - shadow_lo] = 1;", ";",
           ("tests/test_codegen_shadow.py::test_stated_write_ahead_of_each_host_kernel_is_safe",)),
]


def _copy_tree(dst: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", ".pytest_cache", ".hypothesis", "*.pyc")
    for part in ("src", "tests", "tools"):
        shutil.copytree(ROOT / part, dst / part, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", dst / "pyproject.toml")


def run_mutant(m: Mutant, tree: Path, timeout: float) -> tuple[str, float, str]:
    """("caught" | "survived" | "timeout" | "error N", seconds, last output lines) of one mutant in ``tree``."""
    path = tree / m.path
    original = path.read_text()
    if original.count(m.old) != 1:
        raise SystemExit(f"mutant {m.id}: the text to replace occurs {original.count(m.old)} times in {m.path}")
    path.write_text(original.replace(m.old, m.new))
    env = {**os.environ, "PYTHONPATH": str(tree / "src"), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("CI", None)
    t0 = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *m.tests],
                           cwd=tree, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        # 1: tests failed, 2: collection failed (both catch it); 4, 5: no such test / none collected
        outcome = {0: "survived", 1: "caught", 2: "caught"}.get(r.returncode, f"error {r.returncode}")
        tail = "\n".join((r.stdout + r.stderr).strip().splitlines()[-3:])
    except subprocess.TimeoutExpired:
        outcome, tail = "timeout", ""
    finally:
        path.write_text(original)
    return outcome, time.perf_counter() - t0, tail


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*", help="mutant ids to run (default: all)")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per mutant (a timeout counts as caught)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.only or m.id in args.only]
    if args.list:
        for m in chosen:
            print(f"{m.id:16} {m.path}: {m.what}  [{' '.join(m.tests)}]")
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="tp-mutants-") as tmp:
        tree = Path(tmp)
        _copy_tree(tree)
        for m in chosen:
            outcome, secs, tail = run_mutant(m, tree, args.timeout)
            results.append({"id": m.id, "what": m.what, "outcome": outcome, "seconds": round(secs, 1)})
            print(f"{outcome:8} {secs:6.1f} s  {m.id:16} {m.what}", flush=True)
            if outcome != "caught":
                print(f"         {tail}", flush=True)
    caught = sum(r["outcome"] in ("caught", "timeout") for r in results)
    print(f"caught {caught}/{len(results)}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
