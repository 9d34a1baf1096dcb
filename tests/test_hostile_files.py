"""Hostile files in a working dir or from the user (issue 13, "nothing lost, nothing false").

- the allocation bound ``rltasks.checkpoint`` states (``AMPLIFICATION`` times the file plus
  1 MiB, tracemalloc's peak) holds for files built to break it: container headers that each
  declare as many elements as the whole file has bytes, nested, wide, inside ext records,
  behind a valid checksum; each is a one-line ``CheckpointError``;
- every file rltasks reads (checkpoints, ``rltasks.lock``, ``results.json``,
  ``metrics.jsonl``, ``--config``) must be a regular file within its size limit: a symlink
  to ``/dev/zero`` (an endless read) and a FIFO (an ``open`` that blocks for ever) are refused
  with one line, in a subprocess under a memory limit and a timeout, so that a regression
  fails rather than eats the machine or hangs the suite;
- a ``--config`` alias bomb, a self-referential alias and a config nested too deeply are a
  one-line ``error:`` naming the file, exit 2.
"""

from __future__ import annotations

import json
import os
import resource
import struct
import subprocess
import sys
import textwrap
import tracemalloc
from pathlib import Path

import msgpack
import pytest
from helpers import ROOT, envelope, environ, script_command

from rltasks import checkpoint
from rltasks.checkpoint import AMPLIFICATION, FORMAT, CheckpointError, load, peek, save
from rltasks.trial.files import read_curve, read_results, try_read_results
from rltasks.trial.workdir import LOCK_NAME

MIB = 2**20
FAST = ["--env", "CartPole-v1", "--steps-per-epoch", "64", "--num-envs", "2", "--n-steps", "16",
        "--hidden", "8", "--batch-size", "32", "--update-epochs", "1", "--eval-episodes", "2",
        "--vectorization", "sync", "--seed", "1"]
LIMIT_AS = 3 * 2**29  # 1.5 GiB of address space: a trial needs ~1 GiB, /dev/zero would take all


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT_AS, LIMIT_AS))


def run_limited(command: list[str], timeout: float = 120, cwd: Path = ROOT
                ) -> subprocess.CompletedProcess:
    """Run ``command`` under LIMIT_AS of memory; a hang is a TimeoutExpired failure."""
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=environ(), preexec_fn=_limit_memory)


def python_limited(code: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return run_limited([sys.executable, "-c", textwrap.dedent(code), *args], timeout=timeout)


def one_error_line(proc: subprocess.CompletedProcess, code: int = 2) -> str:
    """The process exited ``code`` with exactly one line on stderr, ``error: ...``."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr[-3000:]
    assert len(lines[0]) < 1000, lines[0][:300]
    return lines[0]


# ---------------------------------------------------------------------- the allocation bound

def nested(first: int, fmt: str, count: int, depth: int) -> bytes:
    return (bytes([first]) + struct.pack(fmt, count)) * depth


N = 10_000  # each lying header declares as many elements as the whole thing has bytes
ARRAYS = nested(0xDD, ">I", N, N // 5)  # 2000 nested array32 headers of 10k elements
HOSTILE_PAYLOADS = {
    "nested array headers": ARRAYS,
    "nested map headers": nested(0xDF, ">I", N, N // 5),
    "wide maps": b"\xdf" + struct.pack(">I", 1000) + (b"\x00\xde" + struct.pack(">H", 4000))
                 * 1000,
    "arrays of maps": (b"\xdd" + struct.pack(">I", N) + b"\xdf" + struct.pack(">I", N)) * 1000,
    "ext record of nested headers": msgpack.packb(msgpack.ExtType(1, ARRAYS)),
    "tensor record of nested headers": msgpack.packb({"state": {"w": msgpack.ExtType(2, ARRAYS)}}),
    "shape of nested headers": msgpack.packb(msgpack.ExtType(
        1, b"\x93\xa7float32" + nested(0xDD, ">I", 7000, 1400))),
}
HOSTILE_ENVELOPES = {
    "envelope of nested array headers": ARRAYS,
    "envelope map holding nested headers": b"\x81\xa6format" + ARRAYS,
    "envelope of 3 keys, then an array": msgpack.packb(
        {"format": FORMAT, "sha256": "0" * 64, "payload": [b""] * 3000}),
}


def peak_of(read, path: Path) -> tuple[int, Exception | None]:
    tracemalloc.start()
    try:
        read(path)
        error = None
    except Exception as err:  # the caller asserts which it was
        error = err
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak, error


@pytest.mark.parametrize("case", [*HOSTILE_PAYLOADS, *HOSTILE_ENVELOPES])
def test_lying_headers_are_refused_within_the_stated_bound(tmp_path, case):
    """A valid checksum over a hostile payload, or a hostile envelope: the old loader took
    ~80 MB (8 bytes per declared slot) for 10 KB before it even checked the checksum."""
    path = tmp_path / "last.ckpt"
    if case in HOSTILE_PAYLOADS:
        path.write_bytes(envelope(HOSTILE_PAYLOADS[case]))
    else:
        path.write_bytes(HOSTILE_ENVELOPES[case])
    for read in (load, peek):
        peak, error = peak_of(read, path)
        assert isinstance(error, CheckpointError), repr(error)
        assert "\n" not in str(error) and str(error).startswith(f"cannot load checkpoint {path}")
        size = path.stat().st_size
        assert peak <= AMPLIFICATION * size + MIB, f"peak {peak} B for a file of {size} B"


def test_the_costliest_real_shape_loads_within_the_bound(tmp_path):
    """Chains of one-entry maps keyed by a negative int: 2 bytes a dict, the worst measured."""
    payload = b"\xdd" + struct.pack(">I", 2000) + (b"\x81\xe0" * 50 + b"\x80") * 2000
    path = tmp_path / "last.ckpt"
    path.write_bytes(envelope(payload))
    peak, error = peak_of(load, path)
    assert error is None
    assert peak <= AMPLIFICATION * path.stat().st_size + MIB


def test_save_refuses_what_load_would_refuse_as_too_deep(tmp_path):
    deep: list = []
    for _ in range(checkpoint._MAX_DEPTH - 1):
        deep = [deep]
    save(tmp_path / "ok.ckpt", deep)  # the deepest a checkpoint may be round-trips
    assert load(tmp_path / "ok.ckpt") == deep
    with pytest.raises(ValueError, match="deeper than"):
        save(tmp_path / "deep.ckpt", [deep])
    assert not (tmp_path / "deep.ckpt").exists()


# -------------------------------------------------------------------- checkpoints: not files

LOAD = """
import sys
from rltasks.checkpoint import CheckpointError, load
try:
    load(sys.argv[1])
except CheckpointError as err:
    print(err)
    sys.exit(3)
"""


@pytest.mark.parametrize("kind", ["dev-zero", "fifo", "directory"])
def test_a_checkpoint_that_is_not_a_regular_file_is_refused_in_one_line(tmp_path, kind):
    path = tmp_path / "last.ckpt"
    if kind == "dev-zero":
        path.symlink_to("/dev/zero")
    elif kind == "fifo":
        os.mkfifo(path)
    else:
        path.mkdir()
    proc = python_limited(LOAD, str(path))  # the old loader: MemoryError, or a hang
    assert proc.returncode == 3, proc.stderr[-3000:]
    line = proc.stdout.strip()
    assert "\n" not in line and line.startswith(f"cannot load checkpoint {path}: ")
    assert "not a regular file" in line


def test_a_checkpoint_over_the_format_size_is_refused_before_reading(tmp_path):
    path = tmp_path / "last.ckpt"
    with open(path, "wb") as file:  # sparse: no disk used
        file.truncate(checkpoint.MAX_FILE_BYTES + 1)
    proc = python_limited(LOAD, str(path))
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "over the" in proc.stdout and "\n" not in proc.stdout.strip()


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """A working dir with one epoch of a tiny PPO run."""
    workdir = tmp_path_factory.mktemp("trained") / "run"
    proc = subprocess.run(script_command("ppo", *FAST, "--epochs", "1", workdir=workdir),
                          capture_output=True, text=True, timeout=300, cwd=ROOT, env=environ())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return workdir


def test_the_runner_refuses_a_last_ckpt_linked_to_dev_zero_in_one_line(tmp_path):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "last.ckpt").symlink_to("/dev/zero")
    proc = run_limited(script_command("ppo", *FAST, "--epochs", "1", workdir=workdir))
    line = one_error_line(proc)
    assert f"no usable checkpoint in {workdir}" in line and "not a regular file" in line


def test_the_runner_falls_back_past_a_fifo_to_the_older_checkpoint(tmp_path, trained):
    workdir = tmp_path / "run"
    workdir.mkdir()
    (workdir / "last.ckpt.1").write_bytes((trained / "last.ckpt").read_bytes())
    os.mkfifo(workdir / "last.ckpt")
    proc = run_limited(script_command("ppo", *FAST, "--epochs", "2", workdir=workdir))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "falling back to" in proc.stdout + proc.stderr
    assert load(workdir / "last.ckpt")["epoch"] == 2


# ---------------------------------------------------------------------------------- the lock

ACQUIRE = """
import sys
from rltasks.trial.workdir import LockError, WorkdirLock
try:
    WorkdirLock(sys.argv[1], log=print).acquire()
except LockError as err:
    print(err)
    sys.exit(3)
"""


@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "huge"])
def test_a_lock_that_is_not_a_small_regular_file_is_refused_not_read(tmp_path, kind):
    lock = tmp_path / LOCK_NAME
    if kind == "fifo":
        os.mkfifo(lock)
    elif kind == "dev-zero":
        lock.symlink_to("/dev/zero")
    else:
        with open(lock, "wb") as file:
            file.truncate(2**30)
    proc = python_limited(ACQUIRE, str(tmp_path))
    assert proc.returncode == 3, proc.stderr[-3000:]
    line = proc.stdout.strip()
    assert "\n" not in line and line.startswith(f"lock file {lock} is ") and "delete it" in line
    assert os.path.lexists(lock)  # refused, not taken over


def test_the_runner_refuses_a_fifo_lock_in_one_line(tmp_path):
    os.mkfifo(tmp_path / LOCK_NAME)
    proc = run_limited(script_command("ppo", *FAST, "--epochs", "1", workdir=tmp_path))
    assert "FIFO" in one_error_line(proc)


def test_the_runner_refuses_a_fifo_metrics_log_in_one_line_never_blocks(tmp_path):
    """The trial appends to metrics.jsonl after every epoch: a FIFO there is refused (it
    would block the trial until something reads it), and the epoch's checkpoint is kept."""
    os.mkfifo(tmp_path / "metrics.jsonl")
    proc = run_limited(script_command("ppo", *FAST, "--epochs", "1", workdir=tmp_path))
    assert "metrics log" in one_error_line(proc) and "FIFO" in proc.stderr
    assert load(tmp_path / "last.ckpt")["epoch"] == 1


def test_a_fifo_where_the_lock_writes_its_temp_file_does_not_block_it(tmp_path):
    code = """
import json, os, sys
from pathlib import Path
from rltasks.trial.workdir import LOCK_NAME, WorkdirLock
workdir = Path(sys.argv[1])
os.mkfifo(workdir / f".{LOCK_NAME}.{os.getpid()}.tmp")  # what a writer would block on
with WorkdirLock(workdir):
    assert json.loads((workdir / LOCK_NAME).read_text())["pid"] == os.getpid()
print("locked")
"""
    proc = python_limited(code, str(tmp_path))
    assert proc.returncode == 0 and proc.stdout.strip() == "locked", proc.stderr[-3000:]


# ---------------------------------------------------------------- results.json, metrics.jsonl

def test_an_oversized_results_json_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "results.json"
    path.write_text(" " * (5 * MIB) + json.dumps({"objective": -1.0}))
    with pytest.raises(ValueError, match=f"results file {path} is 5 MiB, over the 4 MiB"):
        read_results(tmp_path)
    assert try_read_results(tmp_path) is None


def test_a_results_json_that_is_not_a_mapping_is_refused(tmp_path):
    (tmp_path / "results.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="not the mapping a trial writes"):
        read_results(tmp_path)


READ = """
import sys
from pathlib import Path
from rltasks.trial.files import read_curve, read_results
try:
    (read_results if sys.argv[2] == "results" else read_curve)(Path(sys.argv[1]))
except ValueError as err:
    print(err)
    sys.exit(3)
"""


@pytest.mark.parametrize("name", ["results.json", "metrics.jsonl"])
def test_a_fifo_results_or_metrics_file_is_refused_never_blocks(tmp_path, name):
    os.mkfifo(tmp_path / name)
    proc = python_limited(READ, str(tmp_path), name.split(".")[0])
    assert proc.returncode == 3, proc.stderr[-3000:]
    assert "FIFO" in proc.stdout and "\n" not in proc.stdout.strip()


def test_an_oversized_metrics_log_is_refused_before_reading(tmp_path):
    with open(tmp_path / "metrics.jsonl", "wb") as file:  # sparse: no disk used
        file.truncate(300 * MIB)
    with pytest.raises(ValueError, match=r"metrics log .* is 300 MiB, over the 256 MiB"):
        read_curve(tmp_path)


def test_a_metrics_line_over_the_limit_is_refused_naming_it(tmp_path):
    row = {"epoch": 1, "env_steps": 64, "return_mean": 9.0}
    lines = [json.dumps(row), json.dumps({**row, "epoch": 2, "pad": "x" * 100_000})]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(ValueError, match="line 2 is over 64 KiB"):
        read_curve(tmp_path)


def test_a_metrics_row_of_the_wrong_types_is_a_value_error_naming_the_line(tmp_path):
    good = {"epoch": 1, "env_steps": 64, "return_mean": 9.0}
    bad = {"epoch": None, "env_steps": 128, "return_mean": 10.0}
    (tmp_path / "metrics.jsonl").write_text(f"{json.dumps(good)}\n{json.dumps(bad)}\n")
    with pytest.raises(ValueError, match="line 2 is not a metrics row"):
        read_curve(tmp_path)


def test_a_metrics_log_still_reads_its_rows_and_skips_a_cut_line(tmp_path):
    rows = [{"epoch": e, "env_steps": 64 * e, "return_mean": float(e)} for e in (1, 2, 2)]
    text = "".join(json.dumps(r) + "\n" for r in rows) + '{"epoch": 3, "env_st'
    (tmp_path / "metrics.jsonl").write_text(text)
    steps, returns = read_curve(tmp_path)
    assert steps.tolist() == [64, 128] and returns.tolist() == [1.0, 2.0]


# ------------------------------------------------------------------------------- --config

def bomb(levels: int = 9) -> str:
    """A 'billion laughs': each level names the previous one 10 times (10**9 values)."""
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n"


BOMBS = {
    "alias bomb": (bomb(), "aliases expand to over"),
    "self-referential alias": ("epochs: &a [*a]\n", "refers to a value that holds it"),
}
CONFIGS = {
    "alias cycle through a mapping": ("lr: &a {x: [1, *a]}\n", "refers to a value that holds it"),
    "nested too deeply": ("lr: " + "[" * 5000 + "]" * 5000 + "\n", "nested too deeply"),
    "oversized": ("#" * (2 * MIB) + "\n", "over the 1 MiB"),
    "not UTF-8": ("lr: \udcff\n", "not UTF-8"),
}


@pytest.mark.parametrize("case", list(BOMBS))
def test_an_alias_bomb_config_is_one_error_line_naming_the_file(tmp_path, case):
    """The bomb expands to 10**9 values (505 bytes of it named a million keys); the
    self-referential alias was a RecursionError traceback."""
    text, reason = BOMBS[case]
    path = tmp_path / "bomb.yaml"
    path.write_text(text)
    proc = run_limited(script_command("ppo", "--config", path, "--epochs", "1",
                                      workdir=tmp_path / "run"), timeout=120)
    line = one_error_line(proc)
    assert line.startswith(f"error: --config {path} is refused: ") and reason in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("case", list(CONFIGS))
def test_a_hostile_config_is_a_usage_error_naming_the_file(tmp_path, case):
    from rltasks.trial.options import UsageError, load_config

    text, reason = CONFIGS[case]
    path = tmp_path / "hostile.yaml"
    path.write_bytes(text.encode("utf8", "surrogateescape"))
    with pytest.raises(UsageError) as info:
        load_config(str(path))
    assert str(path) in str(info.value) and reason in str(info.value)
    assert "\n" not in str(info.value)


def test_a_fifo_config_is_refused_not_waited_on(tmp_path):
    path = tmp_path / "config.yaml"
    os.mkfifo(path)
    proc = run_limited(script_command("ppo", "--config", path, "--epochs", "1",
                                      workdir=tmp_path / "run"), timeout=120)
    assert "FIFO" in one_error_line(proc) and str(path) in proc.stderr


def test_a_config_sharing_values_through_aliases_still_loads(tmp_path):
    from rltasks.trial.options import load_config

    path = tmp_path / "config.yaml"
    path.write_text("common: &c {gamma: 0.9}\nppo: *c\nepochs: &e 2\nseed: *e\n")
    assert load_config(str(path)) == {"common.gamma": 0.9, "ppo.gamma": 0.9, "epochs": 2,
                                      "seed": 2}


@pytest.mark.parametrize("case", list(BOMBS))
def test_the_dask_helper_refuses_an_alias_bomb_orion_config_in_one_line(tmp_path, case, capsys):
    """``python -m rltasks.orion.dask --orion-config`` reads its file as ``--config`` is read."""
    from rltasks.orion import dask

    text, reason = BOMBS[case]
    path = tmp_path / "orion.yaml"
    path.write_text(text)
    argv = ["--scheduler", "tcp://127.0.0.1:9", "--n-workers", "1", "--orion-config", str(path),
            "--print-config", "-n", "x", "python", "scripts/ppo.py"]
    assert dask.main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and f"cannot read --orion-config {path}" in err and reason in err
