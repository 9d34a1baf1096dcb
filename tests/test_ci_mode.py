"""CI mode (``RLTASKS_CI=1``, set by .ci/run): a skip that hides a promise fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

PROBE = Path(__file__).parent / "data" / "ci_probe" / "probe_skips.py"


def run_probe(ci: bool) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RLTASKS_CI"}
    if ci:
        env["RLTASKS_CI"] = "1"
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                           "-rA", str(PROBE)], capture_output=True, text=True, env=env,
                          timeout=120, cwd=Path(__file__).parent.parent)


def test_in_ci_a_skip_fails_naming_its_reason_and_a_hardware_skip_still_skips():
    done = run_probe(ci=True)
    assert done.returncode == 1, done.stdout
    assert "1 failed, 1 skipped" in done.stdout
    assert "SKIPPED [1] tests/data/ci_probe/probe_skips.py:12: no GPU here" in done.stdout
    assert "skipped in CI (RLTASKS_CI=1), which hides a promise: Skipped: an extra is missing" \
        in done.stdout


def test_outside_ci_both_skip():
    done = run_probe(ci=False)
    assert done.returncode == 0, done.stdout
    assert "2 skipped" in done.stdout
