"""Exact resume under SIGKILL, as a matrix: every registered task and every option that puts
something of its own into a checkpoint, each killed at a chosen point and rerun, must end
bit-identical to a run that never stopped.

A case is a configuration (a task with the tiny settings of ``tests/test_contract.py``, plus
options) and a failpoint (``rltasks/failpoints.py``): ``RLTASKS_FAILPOINT="<place>:<n>"``
makes the trial SIGKILL itself the n-th time it reaches that place, so where a kill lands is
deterministic and named in the case's id, by phase:

- ``collect``: a vector-env step (``loader.step``);
- ``update``: an optimizer step (``Task.optimizer_step``);
- ``checkpoint``: inside an atomic write (``write:<file>``: the temp file written and
  fsynced, not renamed; ``replaced:<file>``: renamed, its folder not yet fsynced).

Each case: the first run must die by SIGKILL (exit -9; under ``--seeds --seed-processes``
each seed's process must, the parent then exits 2); the same command rerun without the
failpoint must resume from the epoch the table states and exit 0. Its final ``last.ckpt``
(the whole payload: epoch, counters, hyperparameters, state, the run's bookkeeping), its
``best.ckpt`` where the run keeps one, and its ``results.json`` (all but where it resumed)
must equal those of the configuration's uninterrupted reference run bit for bit. A task that
is registered but not named in ``TASK_CASES`` still gets a case (killed while writing epoch
2's checkpoint).

The runs are started up front by a module fixture, a few at a time, each reference run once
however many cases share it; the tests then check what came back. Each run is its own process
(SIGKILLed for real), forked from a server that has already imported torch (``SERVER``), so
the matrix does not pay a torch import per run; the references, the killed runs and the
reruns come from three servers, so no two compared runs share a hash seed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    ROOT,
    environ,
    results_in,
    script_command,
    state_diffs,
)
from test_contract import TINY

import rltasks
from rltasks import checkpoint
from rltasks.failpoints import VARIABLE
from rltasks.tasks import REGISTRY

EPOCHS = 3
SEED = 7
RUN_TIMEOUT = 300  # seconds for one run; each takes one or two, on a busy machine more
START_TIMEOUT = 600  # seconds for a fork server's imports (torch), on a busy machine
WORKERS = 3  # runs at a time: their start-up is mostly waiting on imports
PHASES = ("collect", "update", "checkpoint")
#: what may differ in results.json between a resumed run and the reference
RESUME_KEYS = ("workdir", "resumed_from", "env_steps_run", "hparams_adopted")


@dataclass(frozen=True)
class Config:
    """A trial's command: ``task`` on ``env`` (its default env) with the tiny settings, the
    matrix's epochs and seed, and ``args``. ``seeds``: ``--seeds 2`` through ``python -m
    rltasks.trial`` (trained as one population; ``processes``: ``--seed-processes``, one
    process per seed). ``parent``: PBT, the working dir is first trained to epoch 1 by the same
    command with ``parent`` instead of ``args``, and ``args`` adopt it."""

    task: str
    args: tuple[str, ...] = ()
    env: str | None = None
    seeds: bool = False
    processes: bool = False
    parent: tuple[str, ...] | None = None

    def argv(self, args: tuple[str, ...] | None = None, epochs: int = EPOCHS) -> list[str]:
        tiny = [f"--{key.replace('_', '-')}={value}" for key, value in TINY[self.task].items()]
        return ["--env", self.env or REGISTRY[self.task].DEFAULT_ENV, "--seed", str(SEED),
                "--epochs", str(epochs), "--eval-episodes", "2", *tiny,
                *(self.args if args is None else args)]

    def command(self, workdir: Path, args: tuple[str, ...] | None = None,
                epochs: int = EPOCHS) -> list[str]:
        if self.seeds:
            return [sys.executable, "-m", "rltasks.trial", self.task,
                    *self.argv(args, epochs), "--seeds", "2", "--workdir", str(workdir),
                    *(["--seed-processes", "true"] if self.processes else [])]
        return script_command(self.task, *self.argv(args, epochs), workdir=workdir)


CONFIGS: dict[str, Config] = {
    **{name: Config(name) for name in rltasks.known_tasks()},
    # prioritized replay, n-step windows, double targets: priorities and sampling RNG
    "dqn-per": Config("dqn", ("--replay", "prioritized", "--n-step", "3", "--double", "true")),
    # hindsight replay stores whole episodes (50 steps): learning starts after the first
    "sac-her": Config("sac", ("--her", "true", "--learning-starts", "100"),
                      env="rltasks/PointReach-v0"),
    "ppo-sync": Config("ppo", ("--vectorization", "sync")),
    "a2c-async": Config("a2c", ("--vectorization", "async")),  # reset mode
    "ppo-norm": Config("ppo", ("--norm-obs", "true", "--norm-reward", "true")),
    "ppo-schedules": Config("ppo", ("--lr-schedule", "linear", "--clip-schedule", "cosine",
                                    "--horizon", "5")),
    "a2c-schedule-norm": Config("a2c", ("--lr-schedule", "exponential", "--horizon", "4",
                                        "--norm-obs", "true", "--norm-reward", "true")),
    "ddpg-ou": Config("ddpg", ("--noise", "ornstein_uhlenbeck")),
    "td3-ou": Config("td3", ("--noise", "ornstein_uhlenbeck")),
    "maddpg-discrete": Config("maddpg", env="mpe2/simple_spread_v3-discrete"),
    # seed 14: the evaluations fall (77.3, 68.7, 63.0), so epoch 1 stays the best
    "ppo-eval-best": Config("ppo", ("--eval-every", "1", "--eval-episodes", "3",
                                    "--seed", "14")),
    "ppo-early-stop": Config("ppo", ("--criterion", "20", "--trial-count", "4")),
    "ppo-seeds": Config("ppo", seeds=True),
    # DQN seeds as one population: replay buffers, priorities, n-step windows of both
    "dqn-seeds": Config("dqn", ("--replay", "prioritized", "--n-step", "3"), seeds=True),
    # DQN seeds on uniform replay: the members' buffers share one stacked storage
    # (rltasks.population.replay.StackedReplay), their Adam steps taken together
    "dqn-seeds-uniform": Config("dqn", ("--n-step", "3"), seeds=True),
    "ppo-seed-processes": Config("ppo", seeds=True, processes=True),
    "ppo-pbt": Config("ppo", ("--lr", "0.002", "--allow-hparam-change", "true"),
                      parent=("--lr", "0.0005")),
    # Atari pixels through ale-py's vector env (reset mode): uint8 frames in the rollout and
    # in a prioritized n-step replay buffer
    "ppo-atari": Config("ppo", env="ALE/Pong-v5"),
    "dqn-per-atari": Config("dqn", ("--replay", "prioritized", "--n-step", "3"),
                            env="ALE/Pong-v5"),
}


@dataclass(frozen=True)
class Case:
    """``config`` killed at failpoint ``spec``; the rerun resumes from epoch ``resumes``
    (None: before any checkpoint; under ``--seeds`` a tuple: each seed's)."""

    config: str
    spec: str
    resumes: int | None | tuple[int | None, ...]

    def resumes_of(self, i: int) -> int | None:
        return self.resumes[i] if isinstance(self.resumes, tuple) else self.resumes

    @property
    def phase(self) -> str:
        place = self.spec.rpartition(":")[0]
        return place if place in ("collect", "update") else "checkpoint"

    @property
    def id(self) -> str:
        return f"{self.phase}-{self.config}-{self.spec}"


#: the registered tasks on their own, one phase each (counts from their tiny settings)
TASK_CASES = {
    "ppo": ("collect:40", 1),
    "a2c": ("update:9", 2),
    "pg": ("update:3", 1),
    "dqn": ("collect:100", 1),
    "ddpg": ("update:100", 1),
    "td3": ("write:last.ckpt:2", 1),
    "sac": ("replaced:last.ckpt:2", 2),
    "maddpg": ("collect:60", 1),
}
DEFAULT_TASK_CASE = ("write:last.ckpt:2", 1)
CASES = [Case(name, *TASK_CASES.get(name, DEFAULT_TASK_CASE)) for name in rltasks.known_tasks()]
CASES += [
    Case("dqn-per", "update:20", 1),
    Case("sac-her", "collect:100", 1),
    Case("ppo-sync", "update:6", 1),
    Case("a2c-async", "collect:70", 2),
    Case("a2c-async", "write:last.ckpt:2", 1),
    Case("ppo-norm", "collect:70", 2),
    Case("ppo-schedules", "update:10", 2),
    Case("a2c-schedule-norm", "replaced:last.ckpt:1", 1),
    Case("ddpg-ou", "collect:100", 1),
    Case("td3-ou", "update:50", 1),
    Case("maddpg-discrete", "update:10", 1),
    Case("ppo-eval-best", "update:6", 1),  # after epoch 1, the best, was saved
    Case("ppo-eval-best", "replaced:best.ckpt:1", None),  # best.ckpt written, last.ckpt not
    Case("ppo-early-stop", "collect:40", 1),
    Case("ppo-early-stop", "replaced:last.ckpt:2", 2),  # the stopping epoch's checkpoint
    # one population: the two seeds count their passes in one process (per epoch 64 env
    # steps, 8 updates, 2 checkpoints: seed 7's, then seed 8's)
    Case("ppo-seeds", "collect:80", 1),
    Case("ppo-seeds", "replaced:last.ckpt:3", (2, 1)),  # seed 8 catches up alone, then both
    # two DQN seeds of 64 env steps an epoch: 128 env steps per epoch in the process
    Case("dqn-seeds", "collect:180", 1),
    Case("dqn-seeds", "replaced:last.ckpt:3", (2, 1)),
    Case("dqn-seeds-uniform", "update:30", 1),
    Case("dqn-seeds-uniform", "replaced:last.ckpt:3", (2, 1)),
    Case("ppo-seed-processes", "collect:40", 1),
    Case("ppo-seed-processes", "write:last.ckpt:3", 2),
    Case("ppo-pbt", "update:3", 1),  # before the adopting run's first checkpoint
    Case("ppo-pbt", "collect:40", 2),  # after it: the rerun continues the adopted lr
    Case("ppo", "write:results.json:1", EPOCHS),  # trained, evaluated, results not written
    Case("ppo-atari", "collect:40", 1),
    Case("dqn-per-atari", "update:20", 1),
]


# ------------------------------------------------------------------------------ the runs

@dataclass
class Run:
    """What one trial process left: its exit code and log, timed."""

    workdir: Path
    code: int
    log: str
    seconds: float


@dataclass
class Outcome:
    """A case's two runs: the SIGKILLed one and the rerun."""

    killed: Run
    leftovers: list[str]  # temp files in the working dirs right after the kill
    rerun: Run
    cleaned: list[str] = field(default_factory=list)  # checkpoint temp files after the rerun


# A fork server: one interpreter that has imported torch and rltasks (seconds of a trial's
# start-up) forks each trial, which runs ``scripts/<task>.py`` (or ``-m rltasks.trial``) as a
# fresh process would: its own session (process group), environment, failpoint, global RNGs
# and log. Requests arrive as JSON lines on stdin; it answers {"id", "pid"} when a trial
# starts and {"id", "code"} (-9 for SIGKILL) when it ends. It is single-threaded, so a fork
# never copies a lock held by another thread. The references, the killed runs and the reruns
# each have their own server, so no two compared runs share a hash seed. A trial becomes its
# fresh process with the helpers of the warm interpreter (tests/warm_server.py).
SERVER = r"""
import json, os, select, sys
sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
from warm_server import become_fresh, finish, run_main
os.write(1, b'{"ready": true}\n')

def trial(req):
    os.setsid()
    fd = os.open(req["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0), os.dup2(fd, 1), os.dup2(fd, 2)
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    become_fresh(req["env"], req["cwd"], req["argv"])
    finish(run_main(req["argv"]))

def say(msg):
    os.write(1, (json.dumps(msg) + "\n").encode())

running, buf, reading = {}, b"", True
while reading or running:
    if reading and select.select([0], [], [], 0.02)[0]:
        chunk = os.read(0, 1 << 16)
        reading, buf = bool(chunk), buf + chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            req = json.loads(line)
            pid = os.fork()
            if pid == 0:
                trial(req)
            running[pid] = req["id"]
            say({"id": req["id"], "pid": pid})
    elif not reading:
        select.select([], [], [], 0.02)
    while running:
        pid, status = os.waitpid(-1, os.WNOHANG)
        if pid == 0:
            break
        if pid in running:
            say({"id": running.pop(pid), "code": os.waitstatus_to_exitcode(status)})
"""


class Forker:
    """A client of one fork server (``SERVER``): ``run`` starts a trial and waits for it."""

    def __init__(self, root: Path, name: str) -> None:
        self.errors = root / f"server-{name}.log"
        with self.errors.open("ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-c", SERVER], cwd=ROOT,
                                         env=environ(), stdin=subprocess.PIPE,
                                         stdout=subprocess.PIPE, stderr=err)
        self.replies: dict[int, dict[str, Any]] = {}
        self.ready = False  # its imports are done: a run's time starts then
        self.changed = threading.Condition()
        self.count = 0
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            msg = json.loads(line)
            with self.changed:
                self.ready = self.ready or msg.pop("ready", False)
                if "id" in msg:
                    self.replies.setdefault(msg["id"], {}).update(msg)
                self.changed.notify_all()
        with self.changed:
            self.changed.notify_all()

    def run(self, command: list[str], env: dict[str, str], log: Path, timeout: float) -> int:
        """Run ``command`` (``[python, script, *args]`` or ``[python, -m, module, *args]``)
        with ``environ(**env)``, output appended to ``log``; its exit code (-9: SIGKILL).
        Whatever is left of its process group afterwards (env workers) is SIGKILLed."""
        with self.changed:
            up = self.changed.wait_for(lambda: self.ready or self.proc.poll() is not None,
                                       START_TIMEOUT)
            assert self.ready, f"the fork server did not start ({up}):\n{self.errors.read_text()}"
            ident, self.count = self.count, self.count + 1
            request = {"id": ident, "argv": command[1:], "env": environ(**env),
                       "log": str(log), "cwd": str(ROOT)}
            self.proc.stdin.write((json.dumps(request) + "\n").encode())
            self.proc.stdin.flush()
            done = self.changed.wait_for(
                lambda: "code" in self.replies.get(ident, {}) or self.proc.poll() is not None,
                timeout)
            reply = self.replies.get(ident, {})
        if "pid" in reply:
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(reply["pid"], signal.SIGKILL)
        assert done and "code" in reply, (
            f"{' '.join(command)}: no exit in {timeout} s (server: {self.proc.poll()}):\n"
            f"{log.read_text()[-3000:] if log.exists() else ''}{self.errors.read_text()}")
        return reply["code"]

    def close(self) -> None:
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def run_trial(server: Forker, command: list[str], workdir: Path,
              failpoint: str | None = None) -> Run:
    """Run ``command`` to its end on ``server``, its output in ``workdir``'s log."""
    log = workdir.parent / f"{workdir.name}.log"
    begin = time.monotonic()
    code = server.run(command, {VARIABLE: failpoint} if failpoint else {}, log, RUN_TIMEOUT)
    return Run(workdir, code, log.read_text(), time.monotonic() - begin)


def temp_files(workdir: Path, pattern: str = ".*.tmp") -> list[str]:
    """The temp files of atomic writes under ``workdir`` (of checkpoints: ``.*.ckpt.*.tmp``)."""
    return sorted(str(p.relative_to(workdir)) for p in workdir.rglob(pattern))


class Matrix:
    """Starts the selected cases' runs on a few threads: each reference once, each case's
    SIGKILLed run then its rerun; a PBT configuration's parent run once, copied."""

    def __init__(self, root: Path, pool: ThreadPoolExecutor) -> None:
        self.root, self.pool = root, pool
        self.servers = {role: Forker(root, role) for role in ("reference", "killed", "rerun")}
        self.parents: dict[str, Future] = {}
        self.references: dict[str, Future] = {}
        self.outcomes: dict[str, Future] = {}

    def fresh(self, config: str, name: str) -> Path:
        """A new working dir, holding a copy of the parent run for a PBT configuration."""
        workdir = self.root / name
        if config in self.parents:
            shutil.copytree(self.parents[config].result().workdir, workdir)
        return workdir

    def parent(self, name: str) -> Run:
        config = CONFIGS[name]
        workdir = self.root / f"parent-{name}"
        run = run_trial(self.servers["reference"], config.command(workdir, config.parent,
                                                                 epochs=1), workdir)
        assert run.code == 0, run.log[-3000:]
        return run

    def reference(self, name: str) -> Run:
        workdir = self.fresh(name, f"reference-{name}")
        return run_trial(self.servers["reference"], CONFIGS[name].command(workdir), workdir)

    def case(self, case: Case) -> Outcome:
        workdir = self.fresh(case.config, case.id.replace(":", "-"))
        command = CONFIGS[case.config].command(workdir)
        killed = run_trial(self.servers["killed"], command, workdir, failpoint=case.spec)
        leftovers = temp_files(workdir)
        rerun = run_trial(self.servers["rerun"], command, workdir)
        return Outcome(killed, leftovers, rerun, temp_files(workdir, ".*.ckpt.*.tmp"))

    def submit(self, cases: list[Case]) -> None:
        names = list(dict.fromkeys(case.config for case in cases))
        for name in names:
            if CONFIGS[name].parent is not None:
                self.parents[name] = self.pool.submit(self.parent, name)
        for name in names:
            self.references[name] = self.pool.submit(self.reference, name)
        for case in cases:
            self.outcomes[case.id] = self.pool.submit(self.case, case)


@pytest.fixture(scope="module")
def matrix(request, tmp_path_factory) -> Iterator[Matrix]:
    """The runs of the cases this session selected, started at once and shared."""
    ids = {item.callspec.params["case"].id for item in request.session.items
           if item.module is request.module and hasattr(item, "callspec")
           and isinstance(item.callspec.params.get("case"), Case)}
    pool = ThreadPoolExecutor(WORKERS)
    runs = Matrix(tmp_path_factory.mktemp("kill-matrix"), pool)
    begin = time.monotonic()
    runs.submit([case for case in CASES if case.id in ids])
    try:
        yield runs
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        for server in runs.servers.values():
            server.close()
        print(f"\nkill matrix: {len(ids)} cases, {len(runs.references)} references, "
              f"{time.monotonic() - begin:.1f} s")


# ------------------------------------------------------------------------------ comparing

def workdirs(run: Run, config: Config) -> list[Path]:
    """The working dirs holding checkpoints: the run's, or each seed's."""
    if config.seeds:
        return [run.workdir / f"seed-{SEED + i}" for i in range(2)]
    return [run.workdir]


def comparable(results: dict[str, Any]) -> dict[str, Any]:
    """``results.json`` without what records where a run resumed."""
    kept = {k: v for k, v in results.items() if k not in RESUME_KEYS}
    if "per_seed" in kept:
        kept["per_seed"] = [{k: v for k, v in row.items() if k != "resumed_from"}
                            for row in kept["per_seed"]]
    return kept


def assert_same_checkpoints(resumed: Path, reference: Path) -> None:
    """last.ckpt (the whole payload) and best.ckpt, where the reference has one, identical."""
    for name in ("last.ckpt", "best.ckpt"):
        if name == "best.ckpt" and not (reference / name).exists():
            assert not (resumed / name).exists(), f"{resumed / name}: the reference has none"
            continue
        mine, theirs = checkpoint.load(resumed / name), checkpoint.load(reference / name)
        assert (mine["epoch"], mine["env_steps"]) == (theirs["epoch"], theirs["env_steps"]), name
        diffs = state_diffs(mine, theirs, path=name)
        assert not diffs, f"{len(diffs)} differences:\n" + "\n".join(diffs[:40])


def assert_killed(case: Case, run: Run) -> None:
    """The first run died by its failpoint: SIGKILL, where the case says."""
    line = f"failpoint {case.spec}: SIGKILL"
    if CONFIGS[case.config].processes:  # each seed's process died; the parent reports it
        assert run.code == 2 and "exit codes [-9]" in run.log, (run.code, run.log[-3000:])
        assert run.log.count(line) == 2, run.log[-3000:]
    else:
        assert run.code == -signal.SIGKILL, (run.code, run.log[-3000:])
        assert line in run.log, run.log[-3000:]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_sigkilled_at_a_failpoint_then_rerun_ends_exactly_as_uninterrupted(case, matrix):
    config = CONFIGS[case.config]
    outcome = matrix.outcomes[case.id].result()
    assert_killed(case, outcome.killed)
    if case.spec.startswith("write:"):  # the temp file was written, then the process died
        name = case.spec.split(":")[1]
        assert any(Path(p).name.startswith(f".{name}.") for p in outcome.leftovers), (
            outcome.leftovers)
    rerun = outcome.rerun
    assert rerun.code == 0, rerun.log[-3000:]
    assert not outcome.cleaned, f"the rerun left the killed run's temp files: {outcome.cleaned}"
    reference = matrix.references[case.config].result()
    assert reference.code == 0, reference.log[-3000:]
    for i, (resumed, ref) in enumerate(zip(workdirs(rerun, config), workdirs(reference, config),
                                           strict=True)):
        assert_same_checkpoints(resumed, ref)
        assert results_in(resumed)["resumed_from"] == case.resumes_of(i), rerun.log[-3000:]
        assert comparable(results_in(resumed)) == comparable(results_in(ref))
        if not config.seeds:
            assert results_in(ref)["resumed_from"] == (1 if config.parent else None)
    if config.seeds:
        assert comparable(results_in(rerun.workdir)) == comparable(results_in(reference.workdir))


def test_the_matrix_kills_in_every_phase_and_covers_every_task():
    phases = {case.phase for case in CASES}
    assert phases == set(PHASES), f"phases without a kill: {set(PHASES) - phases}"
    tasks = {CONFIGS[case.config].task for case in CASES}
    assert tasks >= set(rltasks.known_tasks()), set(rltasks.known_tasks()) - tasks
    assert len({case.id for case in CASES}) == len(CASES), "two cases with one id"
    assert set(CONFIGS) == {case.config for case in CASES}, "a configuration without a case"
