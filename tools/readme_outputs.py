"""Regenerate (or check) the README's "real output" blocks by rerunning their commands.

Each block is fenced by markers naming the command whose output it shows::

    <!-- output: tinypatch analyze ../shared/models/x.tflite | keep ^│ (peak|MACs) -->
    ```
    ...the command's stdout...
    ```
    <!-- /output -->

* ``tinypatch ARGS`` runs the CLI in this process (``../shared`` means ``$TINYPATCH_ASSETS``);
  ``python`` runs the README's nearest ```` ```python ```` block above the marker, as a script;
* ``| keep REGEX`` keeps the lines matching REGEX (``re.search``); each run of dropped lines
  between two kept ones becomes one ``...`` line;
* timings (``2.72 s``, ``4.7 ms``) may differ: blocks that differ only there are left as they are.

``python tools/readme_outputs.py`` rewrites the stale blocks (and the files their commands write,
e.g. ``--plot`` images); ``--check`` changes nothing (plots go to a temporary folder) and exits 1
listing the stale blocks with a diff; ``-k TEXT`` handles only the blocks whose command contains TEXT.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import os
import re
import shlex
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))  # this checkout's tinypatch, not another installed one
README = ROOT / "README.md"
BLOCK = re.compile(r"<!-- output: (?P<spec>.+?) -->\n```[a-z]*\n(?P<body>.*?)```\n<!-- /output -->", re.DOTALL)
PYTHON_BLOCK = re.compile(r"```python\n(.*?)```", re.DOTALL)
TIMING = re.compile(r"\d+(?:\.\d+)? m?s\b")


@dataclass(frozen=True)
class Block:
    """One marked output block of the README."""

    spec: str  # the marker's text: command, then optional "| keep REGEX"
    command: str
    keep: re.Pattern[str] | None
    body: str  # the block's current text
    start: int  # span of the body in the README text
    end: int
    code: str | None = None  # for "python": the code block it runs


def parse(text: str) -> list[Block]:
    """The marked blocks of ``text``; ValueError on a malformed marker."""
    blocks = []
    for m in BLOCK.finditer(text):
        spec = m.group("spec")
        command, _, keep = (part.strip() for part in spec.partition("| keep "))
        if not command:
            raise ValueError(f"output marker without a command: {spec!r}")
        code = None
        if command == "python":
            found = PYTHON_BLOCK.findall(text[:m.start()])
            if not found:
                raise ValueError("a `python` output marker needs a ```python block above it")
            code = found[-1]
        elif not command.startswith("tinypatch "):
            raise ValueError(f"output marker command must be `tinypatch ...` or `python`: {command!r}")
        blocks.append(Block(spec, command, re.compile(keep) if keep else None, m.group("body"),
                            m.start("body"), m.end("body"), code))
    if text.count("<!-- output:") != len(blocks):
        raise ValueError("an <!-- output: ... --> marker is not followed by a ``` block and <!-- /output -->")
    return blocks


def filtered(output: str, keep: re.Pattern[str] | None) -> str:
    """``output`` without trailing blanks, reduced to the lines ``keep`` matches (gaps as ``...``)."""
    lines = [line.rstrip() for line in output.strip("\n").splitlines()]
    if keep is None:
        return "\n".join(lines) + "\n"
    out: list[str] = []
    gap = False
    for line in lines:
        if keep.search(line):
            if gap and out:
                out.append("...")
            out.append(line)
            gap = False
        else:
            gap = True
    return "\n".join(out) + "\n"


def _argv(command: str, plots: Path | None) -> list[str]:
    """The CLI arguments of ``command``: ../shared -> the assets folder; --plot into ``plots`` if given."""
    from tinypatch.assets import assets_dir

    argv = shlex.split(command)[1:]
    assets = assets_dir()
    for i, a in enumerate(argv):
        if a.startswith("../shared/"):
            if assets is None:
                raise SystemExit(f"{command}: shared assets not found (set TINYPATCH_ASSETS)")
            argv[i] = str(assets / a[len("../shared/"):])
        if plots is not None and i and argv[i - 1] == "--plot":
            argv[i] = str(plots / Path(a).name)
    return argv


def run(block: Block, plots: Path | None = None) -> str:
    """The block's fresh text: its command's stdout, filtered."""
    if block.code is not None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT / "src"), os.environ.get("PYTHONPATH")])))
        with tempfile.TemporaryDirectory() as tmp:
            r = subprocess.run([sys.executable, "-c", block.code], cwd=tmp, env=env, capture_output=True, text=True,
                               timeout=600, check=False)
        if r.returncode:
            raise SystemExit(f"the README's python example failed:\n{r.stderr}")
        return filtered(r.stdout, block.keep)
    from tinypatch.cli import main

    out = io.StringIO()
    cwd = os.getcwd()
    try:
        os.chdir(ROOT)
        with contextlib.redirect_stdout(out):
            status = main(_argv(block.command, plots))
    finally:
        os.chdir(cwd)
    if status:
        raise SystemExit(f"`{block.command}` exited with status {status}")
    text = out.getvalue()
    if plots is not None:  # the README names the files the command writes, not the temporary ones
        for a, b in zip(shlex.split(block.command)[1:], _argv(block.command, plots)):
            text = text.replace(b, a) if a != b and b.startswith(str(plots)) else text
    return filtered(text, block.keep)


def same(old: str, new: str) -> bool:
    """Equal up to timings."""
    return TIMING.sub("<t> s", old) == TIMING.sub("<t> s", new)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 listing the stale blocks")
    p.add_argument("-k", metavar="TEXT", help="only the blocks whose command contains TEXT")
    args = p.parse_args(argv)
    text = README.read_text(encoding="utf-8")
    blocks = [b for b in parse(text) if not args.k or args.k in b.command]
    stale: list[tuple[Block, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for b in blocks:
            print(f"running: {b.command}", file=sys.stderr)
            new = run(b, Path(tmp) if args.check else None)
            if not same(b.body, new):
                stale.append((b, new))
    if args.check:
        for b, new in stale:
            print(f"stale: {b.command}")
            sys.stdout.writelines(difflib.unified_diff(b.body.splitlines(True), new.splitlines(True), "README", "now"))
        print(f"{len(stale)} of {len(blocks)} README output blocks stale")
        return 1 if stale else 0
    for b, new in sorted(stale, key=lambda s: -s[0].start):  # from the end: earlier offsets stay valid
        text = text[:b.start] + new + text[b.end:]
    README.write_text(text, encoding="utf-8")
    print(f"{len(stale)} of {len(blocks)} README output blocks rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
