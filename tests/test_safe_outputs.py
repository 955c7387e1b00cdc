"""Outputs are written safely: atomically, never into someone else's folder, never interleaved,
and an interrupted run leaves either the old output or the complete new one, nothing half."""

from __future__ import annotations

import fcntl
import os
import signal
import subprocess
import sys
import time

import pytest
from test_security_codegen import small_net

import tinypatch.safeio as safeio
from tinypatch.cli import main
from tinypatch.codegen import generate
from tinypatch.errors import OutputError
from tinypatch.planning.plan import Plan


def listing(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


def test_codegen_refuses_a_foreign_folder_unless_forced(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("my notes")
    path = tmp_path / "m.tflite"
    from tinypatch.backends import save_tflite

    save_tflite(small_net(), path)
    assert main(["codegen", str(path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert "not empty and was not written by tinypatch codegen" in err and err.count("\n") == 1
    assert listing(out) == {"notes.txt": b"my notes"}
    assert main(["codegen", str(path), "-o", str(out), "--force"]) == 0
    files = listing(out)
    assert files["notes.txt"] == b"my notes" and "model.c" in files and safeio.MARKER in files


def test_codegen_regenerates_its_own_folder(tmp_path, monkeypatch):
    out = tmp_path / "c"
    generate(small_net(), None, out)
    first = (out / "model.c").read_text()
    generate(small_net(), None, out, inplace=False)
    assert (out / "model.c").read_text() != first and (out / safeio.MARKER).exists()
    assert [p.name for p in tmp_path.iterdir()] == ["c"]  # no staging folder left
    monkeypatch.chdir(out)  # "-o ." regenerates the working directory in place
    generate(small_net(), None, ".")
    assert (out / "model.c").read_text() == first and os.getcwd() == str(out)


def test_concurrent_codegen_cannot_interleave(tmp_path):
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # another codegen is writing here
        with pytest.raises(OutputError, match="another tinypatch codegen is writing"):
            generate(small_net(), None, tmp_path / "c")
    finally:
        os.close(fd)
    assert not (tmp_path / "c").exists()


def test_interrupted_codegen_leaves_the_old_project(tmp_path, monkeypatch):
    out = tmp_path / "c"
    generate(small_net(), None, out)
    before = listing(out)
    calls = []
    real = type(out).write_bytes

    def interrupted(self, data):
        calls.append(self.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, data)

    monkeypatch.setattr(type(out), "write_bytes", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generate(small_net(), None, out, inplace=False)
    assert listing(out) == before and [p.name for p in tmp_path.iterdir()] == ["c"]


def test_sigint_during_codegen_leaves_nothing_half_written(tmp_path):
    """A real SIGINT at some point of a codegen: the folder is absent or complete, never partial."""
    out = tmp_path / "c"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for delay in (0.5, 1.5, 3.0):
        proc = subprocess.Popen([sys.executable, "-m", "tinypatch.cli", "codegen", "mbv2-w0.35-r144", "-o", str(out)],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=120)
        if out.exists():
            files = listing(out)
            assert safeio.MARKER in files and "model.c" in files and "Makefile" in files
            assert files["model.c"].rstrip().endswith(b"}")
        assert [p.name for p in tmp_path.iterdir()] in ([], ["c"])


def test_plan_save_is_atomic(tmp_path, monkeypatch):
    path = tmp_path / "plan.json"
    path.write_text("old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError):
        Plan.layer_by_layer(small_net()).save(str(path))
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["plan.json"]


def _small_model(tmp_path):
    from tinypatch.backends import save_tflite

    path = tmp_path / "m.tflite"
    save_tflite(small_net(), path)
    return str(path)


def test_plan_output_creates_missing_folders_as_codegen_does(tmp_path, capsys):
    """`plan -o results/run1/plan.json` used to fail after the search with the temporary file's name
    ("No such file or directory: '.../.plan.json.x1y2.tmp'")."""
    out = tmp_path / "results" / "run1" / "plan.json"
    assert main(["plan", _small_model(tmp_path), "-o", str(out)]) == 0
    assert Plan.load(str(out)).stages is not None and [p.name for p in out.parent.iterdir()] == ["plan.json"]


@pytest.mark.parametrize("where", ["below_a_file", "a_folder"])
def test_plan_output_errors_name_the_path_not_a_temporary_file(tmp_path, capsys, where):
    (tmp_path / "file").write_text("x")
    (tmp_path / "folder").mkdir()
    out = tmp_path / "file" / "p.json" if where == "below_a_file" else tmp_path / "folder"
    assert main(["plan", _small_model(tmp_path), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write {out}: ") and ".tmp" not in err and err.count("\n") == 1
