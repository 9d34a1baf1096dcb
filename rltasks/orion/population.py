"""The population worker: an Orion worker that trains up to K trials at a time in one process.

    python -m rltasks.orion.population --population K -n NAME [orion hunt's options] \\
        python scripts/TASK.py --config spaces/TASK.yaml [the script's options]

It works on the experiment as ``orion hunt`` does, with the same arguments (the experiment is
built from them by Orion's own code, so a plain ``orion hunt`` worker on the same name shares
the work). Each round it reserves up to K trials through Orion's client (``suggest()`` one at
a time, until K, ``WaitingForTrials``, the end of the experiment or its ``max_trials``
counting the trials other workers hold: ``room``; the client's pacemakers keep every
reserved trial's heartbeat). Each trial's working dir is made as Orion's runner
makes it (a PBT child starts from a copy of its parent's) and its command line is formatted
as Orion's consumer formats it (the ``--config`` file filled in, templates expanded); the
trial is then resolved from that command in this process and prepared as a solo trial
(``rltasks.trial.prepare``: lock, resume from its checkpoints, observers). Trials of a task
that can join a population (``rltasks.population``) and share what one shares
(``lockstep_group``) and their epochs train together; the others alone, in turn. Each
finished trial's results go to Orion with ``observe()``: its working dir and results are a
solo trial's. A trial that fails (bad input, a NaN loss) is released as broken, alone; on
SIGTERM/SIGINT every trial in training stops at an epoch end (checkpointed) and the reserved
trials are released as interrupted, for any worker to resume. ``--seeds N`` trials train as
their script trains them, one at a time. ``--n-workers N`` runs N such workers at once
(``rltasks.orion.workers``).
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

from rltasks.orion.workers import exit_code, supervise
from rltasks.population import lockstep_group
from rltasks.tasks import REGISTRY
from rltasks.trial.agent import AGENT, resolve_agent
from rltasks.trial.files import orion_results
from rltasks.trial.options import resolve
from rltasks.trial.preempt import Preempted, StopSignals, interrupt_code, settled
from rltasks.trial.prepare import Log, Prepared, said_once, stderr_log
from rltasks.trial.run import fit_and_finish, train
from rltasks.trial.seeds import SEED_STATISTICS
from rltasks.trial.together import prepare_locked, train_population

USAGE = ("usage: python -m rltasks.orion.population --population K -n NAME [orion hunt's "
         "options] python scripts/TASK.py [its options]")


class Job(NamedTuple):
    """A reserved trial, resolved from the command Orion formatted for it."""

    trial: Any
    script: str
    argv: list[str]
    task_name: str
    options: dict[str, Any]
    hparams: dict[str, Any]


def main(argv: list[str] | None = None) -> int:
    """Entry point: work on the experiment until it is done, this worker's
    ``--worker-max-trials`` are spent or no trial comes within ``--idle-timeout``; with
    ``--n-workers N``, N such workers at once (``rltasks.orion.workers``). Exits 0, 1 when
    no trial completed and some broke (or a worker died), 2 on bad input, Orion's interrupt
    code on SIGTERM/SIGINT (the reserved trials released as interrupted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        size, hunt_args = population_option(argv)
        client, consumer, settings = open_hunt(hunt_args)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    workers = int(settings.get("n_workers") or 1)
    if workers > 1:  # the experiment is built: the workers join it, none races to create it
        client.close()
        code, counts = supervise(workers, worker_process, (size, hunt_args), stderr_log)
    else:
        code, counts = work(Worker(client, consumer, settings, size))
        code = exit_code([code], counts, stderr_log)
    print(json.dumps(counts))
    return code


def work(worker: Worker) -> tuple[int, dict[str, int]]:
    """Run ``worker`` to its end; (Orion's interrupt code if a signal stopped it, else 0;
    its counts). ``workers.exit_code`` makes the command's code of them."""
    try:
        worker.run()
    except Preempted as err:
        print(f"interrupted: {err}", file=sys.stderr)
        return interrupt_code(), worker.counts
    finally:
        worker.client.close()
    return 0, worker.counts


def worker_process(size: int, hunt_args: list[str], pipe: Any) -> None:
    """One of ``--n-workers``' workers (``rltasks.orion.workers``), with its own client on
    the experiment; its counts sent through ``pipe``."""
    code, counts = work(Worker(*open_hunt(hunt_args), size))
    pipe.send(counts)
    pipe.close()
    sys.exit(settled(code))


def population_option(argv: list[str]) -> tuple[int, list[str]]:
    """``--population K`` (or ``=K``) out of ``argv``: K and the rest, orion hunt's."""
    rest, size = [], None
    tokens = iter(argv)
    for token in tokens:
        if token == "--population":
            size = next(tokens, None)
        elif token.startswith("--population="):
            size = token.partition("=")[2]
        else:
            rest.append(token)
    if size is None or not size.isdigit() or not 1 <= int(size) <= 1024:
        raise ValueError(f"--population K: K trials trained at a time, 1 to 1024 ({USAGE})")
    return int(size), rest


def open_hunt(hunt_args: list[str]) -> tuple[Any, Any, dict[str, Any]]:
    """The experiment client, Orion's consumer (for its command template) and the worker
    settings, built by Orion's own code from ``orion hunt``'s arguments."""
    with warnings.catch_warnings():  # optional extras (profet, as its parsers load), pkg_resources
        warnings.simplefilter("ignore")
        import orion.core
        from orion.client.experiment import ExperimentClient
        from orion.core.cli import load_modules_parser
        from orion.core.cli.base import OrionArgsParser
        from orion.core.io import experiment_builder
        from orion.core.worker.consumer import Consumer

        parser = OrionArgsParser()
        load_modules_parser(parser)
        args = parse_hunt_args(parser, hunt_args)
        args["root"], args["leafs"] = None, []
        experiment = experiment_builder.build_from_args(args)
    config = experiment_builder.get_cmd_config(args)
    worker = {**orion.core.config.worker.to_dict(), **(config.get("worker") or {})}
    branching = config.get("branching") or {}
    ignore = (True if not branching.get("enable", orion.core.config.evc.enable)
              else branching.get("ignore_code_changes"))
    consumer = Consumer(experiment, worker["user_script_config"],
                        worker["interrupt_signal_code"], ignore)
    client = ExperimentClient(experiment, heartbeat=worker["heartbeat"])
    beat_at_heartbeat(client)
    return client, consumer, worker


def parse_hunt_args(parser: Any, hunt_args: list[str]) -> dict[str, Any]:
    """``orion hunt``'s arguments parsed by Orion's parser; a one-line ``ValueError`` for
    what it refuses (argparse prints its whole usage before the error line)."""
    said = io.StringIO()
    try:  # argparse alone: Orion's ``parse`` then sets up its logging on the stderr it finds
        with contextlib.redirect_stderr(said):
            parser.parser.parse_args(["hunt", *hunt_args])
    except SystemExit as done:
        if done.code in (0, None):  # --help, printed to stdout
            raise
        lines = said.getvalue().strip().splitlines() or ["bad arguments"]
        raise ValueError(f"{lines[-1].partition('error: ')[2] or lines[-1]} "
                         f"(orion hunt --help lists its options; {USAGE})") from None
    args, _ = parser.parse(["hunt", *hunt_args])
    return args


def beat_at_heartbeat(client: Any) -> None:
    """Make ``client``'s pacemakers beat every ``client.heartbeat`` seconds. Orion 0.2.7's
    client starts each reserved trial's pacemaker at the pacemaker's own 60 s default
    whatever its heartbeat, so a worker whose ``ORION_HEARTBEAT`` is under 12 s (it takes a
    trial for lost after 5 heartbeats) would take this worker's trials from it."""
    from orion.core.worker.trial_pacemaker import TrialPacemaker

    def maintain(trial: Any) -> None:
        pacemaker = TrialPacemaker(trial, client.storage, wait_time=client.heartbeat)
        client._pacemakers[trial.id] = pacemaker
        pacemaker.start()

    client._maintain_reservation = maintain


class Worker:
    """Reserve, group, train and report trials of one experiment (module docstring)."""

    def __init__(self, client: Any, consumer: Any, settings: dict[str, Any], size: int,
                 log: Log = stderr_log) -> None:
        self.client, self.consumer, self.settings = client, consumer, settings
        self.size, self.log = size, log
        self.counts = {"completed": 0, "broken": 0, "interrupted": 0}
        #: the trials of the round in progress
        self.holding: list[Any] = []

    def run(self) -> None:
        left = int(self.settings["max_trials"])
        while left > 0 and self.counts["broken"] < int(self.settings["max_broken"]):
            with contextlib.ExitStack() as reserved:
                trials = self.holding = self.reserve(min(self.size, left), reserved)
                if not trials:
                    return
                left -= len(trials)
                self.train(trials)

    def reserve(self, count: int, reserved: contextlib.ExitStack) -> list[Any]:
        """Up to ``count`` trials, each released by ``reserved`` on the way out if nothing
        else released it (an exception: broken, as Orion's own worker does)."""
        from orion.core.utils.exceptions import (
            BrokenExperiment,
            CompletedExperiment,
            ReservationRaceCondition,
            WaitingForTrials,
        )

        trials: list[Any] = []
        deadline = time.monotonic() + float(self.settings["idle_timeout"])

        def stop_waiting() -> bool:
            """Nothing to reserve now: stop if some are held or the wait is over, else wait."""
            if trials or time.monotonic() > deadline:
                return True
            time.sleep(0.5)
            return False

        while len(trials) < count:
            if self.room() <= 0:  # the rest is in training elsewhere: wait for what it leaves
                if self.client.is_done or stop_waiting():
                    break
                continue
            try:
                trials.append(reserved.enter_context(held(self.client, self.client.suggest())))
            except ReservationRaceCondition:
                continue
            except WaitingForTrials:
                if stop_waiting():
                    break
            except CompletedExperiment:
                break
            except BrokenExperiment as err:  # --exp-max-broken trials broke
                why = f" ({err})" if str(err) else ""  # another worker's find: Orion says nothing
                self.log(f"the experiment is broken{why}: no more trials; `orion status` "
                         f"shows them, their errors are above")
                break
        return trials

    def room(self) -> float:
        """How many more trials the experiment wants reserved: its ``max_trials`` less those
        completed or reserved by a live worker (a lost trial, whose heartbeat stopped, is
        Orion's to re-queue at the next ``suggest()``). Orion counts only the completed
        ones, so workers that reserve several trials at a time would otherwise run past it
        (two workers of 8 on a 16-trial hunt ran 24)."""
        lost = {t.id for t in self.consumer.experiment.fetch_lost_trials()}
        taken = sum(t.status == "completed" or (t.status == "reserved" and t.id not in lost)
                    for t in self.client.fetch_trials())
        return float(self.client.max_trials or float("inf")) - taken

    def train(self, trials: list[Any]) -> None:
        """Resolve, prepare and train one round's trials; report each."""
        jobs = [job for job in map(self.resolve, trials) if job is not None]
        for job in [j for j in jobs if j.options["seeds"] > 1]:  # as their script trains them
            self.report(job, self.guarded(job, lambda j=job: train(
                j.script, j.argv, j.task_name, j.options, j.hparams)), SEED_STATISTICS)
        jobs = [j for j in jobs if j.options["seeds"] == 1]
        with StopSignals(self.log) as signals, contextlib.ExitStack() as locks:
            prepared = {}
            log = said_once(self.log)  # the round's envs' notes, once for all
            for job in jobs:
                outcome = self.guarded(job, lambda j=job: prepare_locked(
                    locks, j.task_name, j.options, j.hparams, log, signals,
                    label=f"{j.task_name} trial {j.trial.id[:8]}"))
                if isinstance(outcome, BaseException):
                    self.report(job, outcome)
                else:
                    prepared[job.trial.id] = outcome
            for joins, group in self.groups([j for j in jobs if j.trial.id in prepared],
                                            prepared):
                self.train_group(joins, group, [prepared[j.trial.id] for j in group], signals)

    def resolve(self, trial: Any) -> Job | None:
        """The trial's command as Orion's consumer formats it, resolved here; None (the
        trial released as broken) when it is bad input."""
        from orion.client.runner import prepare_trial_working_dir

        try:
            prepare_trial_working_dir(self.client, trial)
            with tempfile.NamedTemporaryFile("w", prefix="trial_", suffix=".conf",
                                             dir=trial.working_dir, delete=False) as conf:
                pass
            command = self.consumer.template_builder.format(conf.name, trial,
                                                            self.consumer.experiment)
            script, argv = script_of(command)
            if not any(a == "--workdir" or a.startswith("--workdir=") for a in argv):
                argv += ["--workdir", str(trial.working_dir)]  # Orion's $ORION_WORKING_DIR
            task_name, args, config = (resolve_agent(argv) if script == AGENT
                                       else (script, argv, None))
            options, hparams = resolve(task_name, args, config)
        except ValueError as err:
            self.report_broken(trial, err)
            return None
        return Job(trial, script, argv, task_name, options, hparams)

    def groups(self, jobs: list[Job], prepared: dict[str, Prepared]
               ) -> list[tuple[bool, list[Job]]]:
        """Jobs that train together, each group with whether it is a population: one per
        lockstep group and epochs; a job whose task cannot join one, alone."""
        together: dict[tuple[Any, ...], list[Job]] = {}
        alone = []
        for job in jobs:
            key = lockstep_group(prepared[job.trial.id].task)
            if key is None:
                alone.append((False, [job]))
            else:
                together.setdefault((*key, job.options["epochs"]), []).append(job)
        return [*((True, group) for group in together.values()), *alone]

    def train_group(self, joins: bool, group: list[Job], trials: list[Prepared],
                    signals: StopSignals) -> None:
        try:
            if not joins:
                outcomes = [self.guarded(group[0], lambda: fit_and_finish(
                    trials[0], group[0].options, signals, self.log))]
            else:
                ids = [j.trial.id[:8] for j in group]
                self.log(f"population of {len(group)}: trials {', '.join(ids)}")
                outcomes = train_population(trials, [j.options for j in group], signals,
                                            self.log, f"trials {ids}")
        except Preempted:
            self.release_unfinished("interrupted")
            raise
        for job, outcome in zip(group, outcomes, strict=True):
            self.report(job, outcome)

    def guarded(self, job: Job, work: Any) -> Any:
        """``work()``, or the exception that ended it (an interruption propagates)."""
        try:
            return work()
        except (Preempted, KeyboardInterrupt):
            self.release_unfinished("interrupted")
            raise
        except Exception as err:
            return err

    def report(self, job: Job, outcome: Any, extra: tuple[str, ...] = ()) -> None:
        if isinstance(outcome, BaseException):
            self.report_broken(job.trial, outcome)
            return
        self.client.observe(job.trial, orion_results(outcome, extra))
        self.counts["completed"] += 1
        self.log(f"trial {job.trial.id[:8]} completed: objective {outcome['objective']:.4g}")

    def report_broken(self, trial: Any, err: BaseException) -> None:
        self.log(f"trial {trial.id[:8]} broken: {type(err).__name__}: {err}")
        self.client.release(trial, status="broken")
        self.counts["broken"] += 1

    def release_unfinished(self, status: str) -> None:
        """Release every trial of this round not yet reported with ``status``."""
        for trial in [t for t in self.holding if t.status == "reserved"]:
            self.client.release(trial, status=status)
            self.counts[status] += 1


@contextlib.contextmanager
def held(client: Any, suggested: Any) -> Iterator[Any]:
    """The trial ``client.suggest()`` reserved, released on the way out unless something
    released it already: as interrupted after an interruption, as broken after another
    exception, else as Orion's ``TrialCM`` releases it. (``TrialCM`` releases it again
    after any exception, so a trial this worker had released as interrupted drew Orion's
    warning "was already released locally".)"""
    trial = suggested.__enter__()  # the trial itself: TrialCM's own exit is not used
    try:
        yield trial
    except BaseException as err:
        if trial.status == "reserved":
            client.release(trial, "interrupted" if isinstance(
                err, (KeyboardInterrupt, Preempted)) else "broken")
        raise
    if trial.status == "reserved":
        client.release(trial)


def script_of(command: list[str]) -> tuple[str, list[str]]:
    """The rltasks script a trial's command runs (``ppo`` for ``scripts/ppo.py``, or
    ``agent``) and its arguments; a one-line ``ValueError`` for any other command."""
    for i, token in enumerate(command):
        if token.endswith(".py"):
            name = Path(token).stem
            if name in REGISTRY or name == AGENT:
                return name, list(command[i + 1:])
            raise ValueError(f"{token} is not an rltasks script (scripts/<task>.py or "
                             f"scripts/agent.py): hunt it with orion hunt")
    raise ValueError(f"the hunt's command {' '.join(command)!r} runs no .py script; "
                     f"{USAGE}")


if __name__ == "__main__":
    sys.exit(settled(main()))
