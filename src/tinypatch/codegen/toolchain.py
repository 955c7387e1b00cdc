"""Build and run generated projects: host gcc, arm-none-eabi-gcc + QEMU, sizes, instruction counts.

Inputs go to ``input.bin`` and outputs come back in ``output.bin`` (raw bytes of every
input/output in model order), for the host binary and for QEMU through semihosting alike.
Executed instructions come from the ``qemu-insncount`` TCG plugin of the shared assets
(built into a temporary folder, never into the project): in total, and inside the kernel
code (``__tp_kernels_start``..``__tp_kernels_end`` in the linker script).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinypatch.codegen.targets import TARGETS
from tinypatch.errors import ToolchainError
from tinypatch.ir import Graph

QEMU = "qemu-system-arm"
ARM_CC = "arm-none-eabi-gcc"


def missing_tools(target: str) -> str | None:
    """Why ``target`` cannot be built and run here (None when everything is installed)."""
    needed = ["make", "cc"] if target == "host" else ["make", ARM_CC, "arm-none-eabi-size", QEMU]
    absent = [t for t in needed if shutil.which(t) is None]
    return f"not installed: {', '.join(absent)}" if absent else None


def make(project: Path, goal: str, timeout: float = 600, variables: Mapping[str, str] | None = None) -> None:
    """``make -C project goal [VAR=value...]``; ToolchainError with the compiler's message on failure."""
    extra = [f"{k}={v}" for k, v in (variables or {}).items()]
    try:
        r = subprocess.run(["make", "-s", "-C", str(project), goal, *extra], capture_output=True, text=True,
                           timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolchainError(f"make {goal} failed: {exc}") from exc
    if r.returncode:
        raise ToolchainError(f"make {goal} failed:\n{(r.stderr or r.stdout)[-3000:]}")


def write_inputs(project: Path, graph: Graph, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray]) -> Path:
    """Write ``input.bin``: every model input's bytes, in model order."""
    if isinstance(inputs, Mapping):
        inputs = [inputs[n] for n in graph.inputs]
    data = b"".join(np.ascontiguousarray(x, graph.tensors[n].np_dtype).tobytes() for n, x in zip(graph.inputs, inputs))
    path = Path(project) / "input.bin"
    path.write_bytes(data)
    return path


def read_outputs(path: Path, graph: Graph) -> dict[str, np.ndarray]:
    """Split ``output.bin`` back into the model outputs."""
    raw = Path(path).read_bytes()
    out, offset = {}, 0
    for name in graph.outputs:
        t = graph.tensors[name]
        if offset + t.nbytes > len(raw):
            raise ToolchainError(f"{path}: {len(raw)} bytes, the outputs need {offset + t.nbytes}")
        out[name] = np.frombuffer(raw[offset: offset + t.nbytes], t.np_dtype).reshape(t.shape).copy()
        offset += t.nbytes
    return out


def run_host(project: Path, graph: Graph, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray],
             binary: str = "model_host", timeout: float = 300, dump: Path | None = None) -> dict[str, np.ndarray]:
    """Run a host build on ``inputs``; sanitizer reports and non-zero exits raise ToolchainError.
    ``dump``: a check build writes every operator's output there (see :mod:`tinypatch.codegen.dump`)."""
    project = Path(project)
    env = {**os.environ, "TP_DUMP_FILE": str(Path(dump).resolve())} if dump is not None else None
    write_inputs(project, graph, inputs)
    out = project / "output.bin"
    out.unlink(missing_ok=True)
    try:  # absolute: the program runs inside the project folder
        r = subprocess.run([str((project / binary).resolve()), "input.bin", "output.bin"], cwd=project,
                           capture_output=True, text=True, timeout=timeout, check=False, env=env)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ToolchainError(f"cannot run {binary}: {exc}") from exc
    if r.returncode or "runtime error" in r.stderr:
        raise ToolchainError(f"{binary} exited with {r.returncode}:\n{r.stderr[-3000:]}")
    return read_outputs(out, graph)


@dataclass
class QemuRun:
    outputs: dict[str, np.ndarray]
    stack_used: int  # measured high-water mark of the painted stack (bytes)
    console: str
    insns: int | None = None  # executed instructions, whole program
    kernel_insns: int | None = None  # executed instructions inside the kernel code


def run_qemu(project: Path, graph: Graph, inputs: Sequence[np.ndarray] | Mapping[str, np.ndarray], target: str,
             plugin: Path | None = None, timeout: float = 600, span: tuple[int, int] | None = None) -> QemuRun:
    """Run ``model_<target>.elf`` on QEMU; with ``plugin`` (libinsncount.so) count instructions, in
    total and inside ``span`` ([lo, hi) addresses; default the kernel code)."""
    project = Path(project)
    elf = project / f"model_{target}.elf"
    write_inputs(project, graph, inputs)
    out = project / "output.bin"
    out.unlink(missing_ok=True)
    cmd = [QEMU, "-M", TARGETS[target].machine, "-nographic", "-monitor", "none", "-serial", "none",
           "-semihosting-config", "enable=on,target=native", "-kernel", elf.name]
    log = project / "plugin.log"
    if plugin is not None:
        lo, hi = span or kernel_range(elf)
        log.unlink(missing_ok=True)
        cmd += ["-plugin", f"{Path(plugin).resolve()},lo={lo:#x},hi={hi:#x}", "-d", "plugin", "-D", log.name]
    try:
        r = subprocess.run(cmd, cwd=project, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise ToolchainError(f"QEMU did not finish within {timeout} s") from exc
    if r.returncode:
        raise ToolchainError(f"{elf.name} on QEMU exited with {r.returncode}:\n{(r.stdout + r.stderr)[-3000:]}")
    console = r.stdout + r.stderr  # QEMU prints the semihosting console on stderr
    m = re.search(r"stack_used (\d+)", console)
    res = QemuRun(read_outputs(out, graph), int(m.group(1)) if m else -1, console)
    if plugin is not None:
        text = log.read_text()
        res.insns = int(re.search(r"insns: (\d+)", text).group(1))  # type: ignore[union-attr]
        res.kernel_insns = int(re.search(r"insns_in_range\[[^)]*\): (\d+)", text).group(1))  # type: ignore[union-attr]
    return res


def _tool_output(cmd: list[str]) -> str:
    r = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if r.returncode:
        raise ToolchainError(f"{' '.join(cmd)} failed: {r.stderr.strip()}")
    return r.stdout


def section_sizes(elf: Path) -> dict[str, int]:
    """Section sizes of an ELF (``arm-none-eabi-size -A``)."""
    sizes = {}
    for line in _tool_output(["arm-none-eabi-size", "-A", str(elf)]).splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0].startswith(".") and parts[1].isdigit():
            sizes[parts[0]] = int(parts[1])
    return sizes


def symbols(elf: Path) -> dict[str, int]:
    """Addresses of the ELF's symbols (``arm-none-eabi-nm``)."""
    out = {}
    for line in _tool_output(["arm-none-eabi-nm", str(elf)]).splitlines():
        parts = line.split()
        if len(parts) == 3:
            out[parts[2]] = int(parts[0], 16)
    return out


def kernel_range(elf: Path) -> tuple[int, int]:
    """[start, end) addresses of the kernel code (tp_kernels.c and tp_fast_arm.c)."""
    sym = symbols(elf)
    return sym["__tp_kernels_start"], sym["__tp_kernels_end"]


def kernel_functions(elf: Path) -> dict[str, tuple[int, int]]:
    """{name: [start, end)} of the functions inside the kernel code (static helpers included)."""
    lo, hi = kernel_range(elf)
    out = {}
    for line in _tool_output(["arm-none-eabi-nm", "-S", "--defined-only", str(elf)]).splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[2] in "tT":
            start = int(parts[0], 16) & ~1  # Thumb bit
            if lo <= start < hi:
                out[parts[3]] = (start, start + int(parts[1], 16))
    return out


def build_insncount(assets: Path, workdir: Path) -> Path:
    """Compile the shared qemu-insncount plugin into ``workdir`` (never into the repository)."""
    src = Path(assets) / "tools" / "qemu-insncount" / "insncount.c"
    if not src.is_file():
        raise ToolchainError(f"qemu-insncount plugin source not found at {src}")
    workdir.mkdir(parents=True, exist_ok=True)
    lib = workdir / "libinsncount.so"
    r = subprocess.run([*shlex.split(os.environ.get("CC", "cc")), "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)],
                       capture_output=True, text=True, check=False)
    if r.returncode:
        raise ToolchainError(f"building the qemu-insncount plugin failed: {r.stderr.strip()}")
    return lib
