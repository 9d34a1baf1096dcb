"""The tests' warm interpreter (``helpers.warm``) runs a script as a fresh ``python`` would:
its argv, environment, working directory, output and exit (code, signal, KeyboardInterrupt),
and hands a process that needs a fresh interpreter (a PYTHONPATH shim) a real one."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import environ, warm

SCRIPT = """
import os, sys
print("argv", sys.argv[1:], "cwd", os.getcwd(), "var", os.environ.get("WARM_PROBE"))
print("torch already imported:", "torch" in sys.modules, file=sys.stderr)
how = sys.argv[1]
if how == "interrupt":
    raise KeyboardInterrupt
if how == "error":
    raise ValueError("boom")
sys.exit(int(how))
"""


def run(tmp_path, how: str, **extra: str) -> subprocess.CompletedProcess:
    script = tmp_path / "probe.py"
    script.write_text(SCRIPT)
    command, env = warm([sys.executable, str(script), how], environ(WARM_PROBE="x", **extra))
    assert command[0].endswith("tests/shims/warm/python")
    return subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize(("how", "code"), [("0", 0), ("3", 3), ("interrupt", -2),
                                           ("error", 1)])
def test_a_warm_child_runs_and_exits_as_a_fresh_python(tmp_path, how, code):
    proc = run(tmp_path, how)
    assert proc.returncode == code, proc.stderr
    assert proc.stdout == f"argv ['{how}'] cwd {tmp_path} var x\n"
    assert "torch already imported: True" in proc.stderr  # it ran on the warm server
    if how == "error":
        assert proc.stderr.rstrip().endswith("ValueError: boom")


def test_a_process_with_a_start_up_shim_gets_a_fresh_interpreter(tmp_path):
    proc = run(tmp_path, "0", PYTHONPATH=str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "torch already imported: False" in proc.stderr
