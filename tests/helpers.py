"""Shared test helpers: plain functions that tests call with arguments, often many times
(importable because ``tests/conftest.py`` puts tests/ on sys.path). Fixtures live in
``conftest.py``.

Every process a test starts (a script, the ``rltasks`` command, ``orion hunt``) gets
``environ()``: this process's environment without ``ORION_*`` (a user's database or trial
must never leak in) and ``RLTASKS_TEST_*`` (the shims' switches), on one torch thread, plus
what the caller adds. Orion processes get ``Orion.env`` (the ``orion`` fixture): the same,
pointing at the test's own pickled database.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHIMS = ROOT / "tests" / "shims"
BIN = Path(sys.executable).parent
ORION = BIN / "orion"
WARM = SHIMS / "warm"  # its ``python`` runs a script in a child of the warm server
TIMEOUT = 120  # seconds for one script or trial process; each takes a few
HUNT_TIMEOUT = 180  # seconds for one ``orion hunt``


# ---------------------------------------------------------------------------- task states

def state_diffs(a: Any, b: Any, path: str = "state") -> list[str]:
    """Every place where two nested states differ: tensors and arrays must have the same dtype,
    shape and values, other leaves the same type and value (floats exactly, NaN equal to NaN).
    Any two dicts compare by their items and a list equals a tuple of the same items: a
    checkpoint file gives a module's ``OrderedDict`` state back as a dict, a tuple as a list."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
            return [f"{path}: {type(a).__name__} vs {type(b).__name__}"]
        if a.dtype != b.dtype or a.shape != b.shape:
            return [f"{path}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"]
        same = torch.equal(a, b) or (
            (a.is_floating_point() or a.is_complex()) and torch.equal(a.isnan(), b.isnan())
            and torch.equal(a[~a.isnan()], b[~b.isnan()]))
        return [] if same else [f"{path}: tensor values differ"]
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        if not (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)):
            return [f"{path}: {type(a).__name__} vs {type(b).__name__}"]
        if a.dtype != b.dtype or a.shape != b.shape:
            return [f"{path}: {a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"]
        same = np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")
        return [] if same else [f"{path}: array values differ"]
    alike = (isinstance(a, dict) and isinstance(b, dict)) or (
        isinstance(a, list | tuple) and isinstance(b, list | tuple))
    if type(a) is not type(b) and not alike:
        return [f"{path}: {type(a).__name__} {a!r:.60} vs {type(b).__name__} {b!r:.60}"]
    if isinstance(a, dict):
        diffs = [f"{path}.{k}: only in one state" for k in a.keys() ^ b.keys()]
        for key in a:
            if key in b:
                diffs += state_diffs(a[key], b[key], f"{path}.{key}")
        return diffs
    if isinstance(a, list | tuple):
        if len(a) != len(b):
            return [f"{path}: length {len(a)} vs {len(b)}"]
        return [d for i, (x, y) in enumerate(zip(a, b, strict=True))
                for d in state_diffs(x, y, f"{path}[{i}]")]
    if isinstance(a, float | np.floating) and math.isnan(a) and math.isnan(b):
        return []
    return [] if a == b else [f"{path}: {a!r:.60} vs {b!r:.60}"]


def assert_same_state(a: Any, b: Any) -> None:
    """Assert two nested states are identical (see ``state_diffs``)."""
    diffs = state_diffs(a, b)
    assert not diffs, f"{len(diffs)} differences:\n" + "\n".join(diffs[:40])


def final_scores(task: Any, epochs: int, metric: str = "return_mean",
                 episodes: int = 10) -> list[float]:
    """Fit ``task`` to ``epochs`` and evaluate its final policy on ``episodes`` deterministic
    episodes; return ``[metric]`` of that evaluation.

    Learning tests assert on this, the final policy, never on the best evaluation along the
    way nor on a mean of several: a learner that reaches a bar once and collapses fails.
    The task is closed at the end. With ``RLTASKS_LEARNING_LOG=FILE`` each call appends a
    JSON line (test, scores, env steps) to FILE: how docs/testing.md's measured finals are
    gathered from a run of the suite."""
    try:
        task.fit(epochs)
        scores = [task.evaluate(episodes=episodes)[metric]]
    finally:
        task.close()
    if os.environ.get("RLTASKS_LEARNING_LOG"):
        with open(os.environ["RLTASKS_LEARNING_LOG"], "a") as log:
            log.write(json.dumps({"test": os.environ.get("PYTEST_CURRENT_TEST", "").split()[0],
                                  "scores": scores, "env_steps": task.env_steps}) + "\n")
    return scores


def assert_resumes_exactly(make: Callable[[], Any], tmp_path: Path, stop: int = 1,
                           end: int = 2) -> Any:
    """Train ``make()`` straight to epoch ``end``; train another to ``stop``, save its state to
    a checkpoint file, load that into a third and train it to ``end``: the two must end
    identical. Returns the straight-through task."""
    from rltasks import checkpoint

    straight = make()
    straight.fit(end)
    first = make()
    first.fit(stop)
    path = tmp_path / "resume.ckpt"
    checkpoint.save(path, first.state_dict())
    resumed = make()
    resumed.load_state_dict(checkpoint.load(path))
    resumed.fit(end)
    assert_same_state(straight.state_dict(), resumed.state_dict())
    return straight


# ------------------------------------------------------------------------------ processes

def environ(**extra: str) -> dict[str, str]:
    """The environment of a process a test starts (see the module docstring), plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ORION_", "RLTASKS_TEST_"))}
    return {**env, "RLTASKS_THREADS": "1", **extra}


def shimmed(shim: Path, **extra: str) -> dict[str, str]:
    """Extra variables that load the start-up shim in folder ``shim`` (``tests/shims``)
    before the process's own code, and switch it on with ``extra``."""
    pythonpath = os.pathsep.join(filter(None, [str(shim), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": pythonpath, **extra}


def script_command(script: str, *args: Any, workdir: str | Path | None = None) -> list[str]:
    """The command line of ``scripts/<script>.py`` with ``args`` (and ``--workdir``)."""
    tail = [] if workdir is None else ["--workdir", str(workdir)]
    return [sys.executable, str(ROOT / "scripts" / f"{script}.py"), *map(str, args), *tail]


def run_script(script: str, *args: Any, workdir: str | Path | None = None,
               env: dict[str, str] | None = None, cwd: Path = ROOT,
               timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """Run ``scripts/<script>.py`` to the end, output captured (``env``: extra variables),
    on a warm server (``warm``)."""
    command, full_env = warm(script_command(script, *args, workdir=workdir),
                             environ(**(env or {})))
    return subprocess.run(command, cwd=cwd, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def cli(*args: Any, env: dict[str, str] | None = None, cwd: Path | None = None,
        timeout: float = 180) -> subprocess.CompletedProcess:
    """Run the ``rltasks`` command (``python -m rltasks``) to the end, output captured; SDL
    renders without a display, for ``record``. Runs on a warm server (``warm``)."""
    command, full_env = warm([sys.executable, "-m", "rltasks", *map(str, args)],
                             environ(**{"SDL_VIDEODRIVER": "dummy", **(env or {})}))
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=cwd,
                          env=full_env)


def start(command: Sequence[str], env: dict[str, str] | None = None, log: Path | None = None,
          cwd: Path = ROOT) -> subprocess.Popen:
    """Start ``command`` in its own process group (so that a signal or a kill reaches every
    process it starts). Its output goes to ``log`` (appended, stderr merged), else to text
    pipes."""
    if log is None:
        return subprocess.Popen(list(command), cwd=cwd, env=environ(**(env or {})),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                start_new_session=True)
    with log.open("ab") as out:
        return subprocess.Popen(list(command), cwd=cwd, env=environ(**(env or {})), stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)


def launch(script: str, *args: Any, workdir: str | Path | None = None,
           env: dict[str, str] | None = None, log: Path | None = None) -> subprocess.Popen:
    """Start ``scripts/<script>.py`` as ``start`` does."""
    return start(script_command(script, *args, workdir=workdir), env=env, log=log)


def kill_group(proc: subprocess.Popen) -> None:
    """SIGKILL the process group of ``proc`` (started by ``start``) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)


def _output(proc: subprocess.Popen, log: Path | None) -> str:
    """What a process wrote: its log, else its stderr pipe (read to the end: it has exited)."""
    if log is not None:
        return log.read_text()[-5000:]
    return (proc.communicate()[1] or "")[-3000:] if proc.stderr else ""


def finish_process(proc: subprocess.Popen, timeout: float = TIMEOUT,
                   log: Path | None = None) -> tuple[int, str]:
    """Wait for a process started by ``start``; kill its process group and fail the test if it
    does not exit in time. Returns (exit code, its stderr, or the text of ``log``)."""
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_group(proc)
        _, err = proc.communicate()
        pytest.fail(f"the process did not exit in {timeout} s:\n"
                    f"{(log.read_text() if log else err or '')[-3000:]}")
    return proc.returncode, log.read_text() if log else err


def wait_for(predicate: Callable[[], Any], proc: subprocess.Popen, what: str,
             timeout: float = TIMEOUT, log: Path | None = None, poll: float = 0.01) -> Any:
    """Poll ``predicate`` until it returns something true, and return that; fail if ``proc``
    exits first (showing its output) or ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert proc.poll() is None, f"exited before {what}:\n{_output(proc, log)}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(poll)
    return found


def sigterm_seeds(script: str, args: Sequence[Any], workdir: Path,
                  seeds: Sequence[int] = (0, 1)) -> tuple[int, str]:
    """Start ``script`` with ``args`` (a ``--seeds`` run) for 200 epochs, SIGTERM it once every
    seed has a checkpoint, and return its exit code and stderr."""
    proc = launch(script, *args, "--epochs", "200", workdir=workdir)
    wait_for(lambda: all((workdir / f"seed-{s}" / "last.ckpt").exists() for s in seeds),
             proc, "a checkpoint of each seed", poll=0.1)
    proc.send_signal(signal.SIGTERM)
    return finish_process(proc)


def last_json(proc: subprocess.CompletedProcess) -> dict:
    """The JSON object on the last line of a successful process's stdout."""
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def results_in(workdir: str | Path) -> dict:
    """The ``results.json`` of a finished run."""
    return json.loads((Path(workdir) / "results.json").read_text())


# ---------------------------------------------------------------------------- checkpoints

class RunsCommand:
    """Pickles to a call of ``os.system`` that touches ``marker``: if the marker appears, a
    loader unpickled untrusted data."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def envelope(payload: bytes, fmt: str | None = None, digest: str | None = None) -> bytes:
    """A checkpoint file around ``payload``: its format (``FORMAT`` by default) and SHA-256
    digest (the right one by default)."""
    import hashlib

    import msgpack

    from rltasks.checkpoint import FORMAT

    digest = hashlib.sha256(payload).hexdigest() if digest is None else digest
    return msgpack.packb({"format": FORMAT if fmt is None else fmt, "sha256": digest,
                          "payload": payload}, use_bin_type=True)


# ---------------------------------------------------------------------------------- Orion

class WarmServer:
    """``tests/warm_server.py`` on a socket of its own, started on first use: a warm
    interpreter (torch, rltasks and Orion imported) that forks the processes ``warm`` sends
    it, with ``PYTHONWARNINGS=warnings`` (unset for None) like theirs."""

    def __init__(self, warnings: str | None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="rltasks-warm-"))
        self.socket = self.root / "warm.sock"
        self.env = {k: v for k, v in environ().items() if k != "PYTHONWARNINGS"}
        if warnings is not None:
            self.env["PYTHONWARNINGS"] = warnings
        self.proc: subprocess.Popen | None = None

    def address(self) -> str:
        if self.proc is None:
            self.proc = subprocess.Popen(
                [sys.executable, str(ROOT / "tests" / "warm_server.py"), str(self.socket)],
                cwd=ROOT, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                text=True)
            ready = self.proc.stdout.readline().strip()
            assert ready == "ready", f"the warm server did not start ({self.proc.poll()})"
        return str(self.socket)

    def close(self) -> None:
        if self.proc is not None:
            self.proc.stdin.close()  # it exits
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)


_WARM: dict[str | None, WarmServer] = {}  # this pytest process's servers, by PYTHONWARNINGS


def warm(command: list[str], env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """``command`` (``python`` with a script or ``-m`` module, or the ``orion`` command, run
    to its end with no signal sent to it) and its environment ``env``, made to run on this
    process's warm server for env's PYTHONWARNINGS: its interpreter is the warm client
    (``tests/shims/warm/python``), which is also first on PATH for the ``python`` of the
    processes it starts (Orion's trials). Each such process would otherwise spend 3 CPU-s
    importing torch, and ``orion`` 8 more. A process that needs a fresh interpreter (a
    start-up shim on PYTHONPATH) gets one from the client. ``RLTASKS_TEST_WARM=0`` turns
    warm servers off."""
    if os.environ.get("RLTASKS_TEST_WARM") == "0":
        return command, env
    key = env.get("PYTHONWARNINGS")
    if key not in _WARM:
        _WARM[key] = WarmServer(key)
    server = _WARM[key]
    head = command[1:] if command[0] == sys.executable else command
    return [str(WARM / "python"), *head], {
        **env, "RLTASKS_TEST_WARM": server.address(), "RLTASKS_TEST_WARM_PYTHON": sys.executable,
        "PATH": os.pathsep.join([str(WARM), env.get("PATH", os.defpath)])}


def close_warm_servers() -> None:
    """Stop every warm server this process started (the end of a pytest session)."""
    while _WARM:
        _WARM.popitem()[1].close()


def hunted(orion: Orion, name: str, space: str, *args: str,
           **kwargs: Any) -> tuple[subprocess.CompletedProcess, list[dict[str, Any]]]:
    """``orion.hunt`` then its trials, every one of them completed (``orion hunt`` exits 0
    even when every trial broke, so the database is what tells)."""
    proc = orion.hunt(name, space, *args, **kwargs)
    found = orion.trials(name)
    assert found and all(t["status"] == "completed" for t in found), (
        [t["status"] for t in found], proc.stdout[-4000:])
    return proc, found


class Orion:
    """A test's own Orion database, ``root/db.pkl`` (the ``orion`` fixture): its storage
    configuration for Orion's Python client, the environment of Orion processes, and hunts
    whose trials work under ``root/work``. ``orion hunt`` exits 0 even when every trial broke,
    so outcomes are read back from the database (``trials``). ``hunt`` (a hunt run to its
    end, no signals) and its trials run on a warm server (``warm``); hunts a test
    starts itself (``hunt_command``, ``env``) run every trial as a fresh process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.db = root / "db.pkl"
        self.storage = {"type": "legacy", "database": {"type": "pickleddb", "host": str(self.db)}}
        self.vars = {"ORION_DB_TYPE": "pickleddb", "ORION_DB_ADDRESS": str(self.db)}
        self.env = environ(**self.vars, PYTHONWARNINGS="ignore",
                           PATH=os.pathsep.join([str(BIN), os.environ.get("PATH", "")]))

    def experiment(self, name: str, **kwargs: Any) -> Any:
        """Orion's ``build_experiment`` in this database."""
        with warnings.catch_warnings():  # orion warns about optional extras (profet)
            warnings.simplefilter("ignore")
            from orion.client import build_experiment
        return build_experiment(name, storage=self.storage, **kwargs)

    def hunt_command(self, name: str, space: str, *args: str, max_trials: int | None = 1,
                     orion_args: Sequence[str] = (), script: str = "scripts/ppo.py"
                     ) -> list[str]:
        """``orion hunt`` of ``script`` with ``space`` (YAML text, written to ``root``, or a
        path under the repo) as its --config. ``max_trials=None`` leaves the budget to the
        algorithm."""
        if space.endswith(".yaml") and "\n" not in space:
            config = ROOT / space
        else:
            config = self.root / f"{name}.yaml"
            config.write_text(space)
        budget = [] if max_trials is None else ["--exp-max-trials", str(max_trials)]
        return [str(ORION), "hunt", *orion_args, "-n", name, *budget,
                "--working-dir", str(self.root / "work"),
                "python", script, "--config", str(config), *args]

    def hunt(self, name: str, space: str, *args: str, timeout: float = HUNT_TIMEOUT,
             **kwargs: Any) -> subprocess.CompletedProcess:
        """Run ``hunt_command(name, space, *args, **kwargs)`` to the end; output merged into
        stdout. It and its trials run on a warm server (``warm``)."""
        command, env = warm(self.hunt_command(name, space, *args, **kwargs), self.env)
        return subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=timeout)

    def trials(self, name: str) -> list[dict[str, Any]]:
        """Every trial of experiment ``name``, as this test's database holds it now (read in
        this process: Orion's client is imported once per worker, not once per query)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from orion.client import get_experiment
        exp = get_experiment(name, storage=self.storage)
        return [{"id": t.id, "status": t.status, "working_dir": t.working_dir,
                 "params": t.params, "hash_params": t.hash_params, "parent": t.parent,
                 "objective": None if t.objective is None else t.objective.value,
                 "heartbeat": t.heartbeat,
                 "results": {r.name: r.value for r in t.results}}
                for t in exp.fetch_trials()]
