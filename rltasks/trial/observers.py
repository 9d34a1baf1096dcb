"""Observers of the epoch loop: checkpointing, early stopping, the metrics log, progress.

They see the task after each epoch. Wall-clock figures (steps per second, elapsed time) are
computed here and go to the log, never into the task state, which stays a pure function of
the computation.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from rltasks.checkpoint import Checkpointer
from rltasks.safeio import append_regular
from rltasks.trial.payload import make_payload


class EarlyStop:
    """Stop training once the mean return of the last ``trial_count`` finished training
    episodes reaches ``criterion``.

    Its window of recent returns and the stop live in ``task.run_state["early_stop"]``, which
    every checkpoint carries (``rltasks.trial.payload``): it goes before ``Checkpointing``, so the
    checkpoint of the stopping epoch records the stop and a rerun does not train past it.
    """

    def __init__(self, criterion: float, trial_count: int = 100) -> None:
        if trial_count < 1:
            raise ValueError(f"trial_count={trial_count!r} must be >= 1")
        self.criterion, self.trial_count = float(criterion), int(trial_count)

    @staticmethod
    def state(task: Any) -> dict[str, Any]:
        if not hasattr(task, "run_state"):
            task.run_state = {}
        return task.run_state.setdefault("early_stop", {"returns": [], "stopped_at": None})

    @staticmethod
    def resume(task: Any, run_state: dict[str, Any] | None) -> int | None:
        """Restore a checkpoint's run state; return the epoch of a recorded stop, if any."""
        task.run_state = dict(run_state or {})  # as saved: a run without one gets none
        stopped = task.run_state.get("early_stop", {}).get("stopped_at")
        if stopped is not None:
            task.stop_reason = f"early stop recorded at epoch {stopped}"
        return stopped

    def on_epoch_end(self, task: Any, metrics: dict[str, Any]) -> None:
        state = self.state(task)
        window = (list(state["returns"]) + list(task.epoch_returns))[-self.trial_count:]
        state["returns"] = window
        if len(window) == self.trial_count:
            mean = sum(window) / len(window)
            metrics["recent_return_mean"] = mean
            if mean >= self.criterion:
                state["stopped_at"] = task.epoch
                state["recent_return_mean"] = mean
                metrics["early_stopped_at"] = task.epoch
                task.stop_reason = (f"early stop at epoch {task.epoch}: the last "
                                    f"{self.trial_count} episodes returned {mean:.1f} on "
                                    f"average >= criterion {self.criterion:g}")


class Checkpointing:
    """Write ``last.ckpt`` every ``every`` epochs (and at ``final_epoch``).

    With ``eval_every`` > 0 the task is evaluated every that many epochs and, with
    ``save_best``, ``best.ckpt`` keeps the best evaluation so far. The best score and its
    epoch live in ``task.run_state["best"]``, which every checkpoint carries (as
    ``EarlyStop``'s state): a resumed run replaces ``best.ckpt`` only on a real improvement.
    Evaluation does not touch the training state.
    """

    def __init__(self, checkpointer: Checkpointer, every: int = 1, final_epoch: int | None = None,
                 eval_every: int = 0, eval_episodes: int = 10, save_best: bool = True) -> None:
        self.checkpointer, self.every, self.final_epoch = checkpointer, every, final_epoch
        self.eval_every, self.eval_episodes = eval_every, eval_episodes
        self.save_best = save_best

    @staticmethod
    def best(task: Any) -> float | None:
        """The best evaluation score of the run so far (a resumed one's too), if any."""
        score = (getattr(task, "run_state", None) or {}).get("best", {}).get("return_mean")
        return float(score) if isinstance(score, int | float) else None

    def on_epoch_end(self, task: Any, metrics: dict[str, Any]) -> None:
        best = False
        if self.eval_every and task.epoch % self.eval_every == 0:
            score = task.evaluate(self.eval_episodes)["return_mean"]
            metrics["eval_return_mean"] = score
            previous = self.best(task)
            best = previous is None or score > previous
            if best:
                if not hasattr(task, "run_state"):
                    task.run_state = {}
                task.run_state["best"] = {"return_mean": score, "epoch": task.epoch}
        if (best or task.epoch % self.every == 0 or task.epoch == self.final_epoch
                or task.stop_reason is not None):  # the last epoch of an early stop
            self.checkpointer.save(make_payload(task), best=best and self.save_best)


class MetricsLog:
    """Append one JSON line per epoch to ``metrics.jsonl``, with steps per second."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._t0 = time.perf_counter()
        self._last_t = self._t0
        self._last_steps: int | None = None

    def on_epoch_end(self, task: Any, metrics: dict[str, Any]) -> None:
        now = time.perf_counter()
        if self._last_steps is None:  # first epoch of this process (maybe a resumed run)
            self._last_steps = task.history[-2]["env_steps"] if len(task.history) > 1 else 0
        sps = (task.env_steps - self._last_steps) / max(now - self._last_t, 1e-9)
        self._last_t, self._last_steps = now, task.env_steps
        row = {**metrics, "sps": round(sps, 1), "elapsed": round(now - self._t0, 3),
               "time": time.time()}
        append_regular(self.path, json.dumps(row) + "\n", "metrics log")
        metrics["sps"] = row["sps"]


class ProgressLog:
    """One plain line per epoch on a stream (stderr by default, so stdout stays parseable),
    headed ``[label]`` (default: the task's name)."""

    def __init__(self, epochs: int, stream: TextIO | None = None,
                 label: str | None = None) -> None:
        self.epochs, self.stream, self.label = epochs, stream or sys.stderr, label

    def on_epoch_end(self, task: Any, metrics: dict[str, Any]) -> None:
        ret = metrics.get("return_mean")
        parts = [f"epoch {task.epoch}/{self.epochs}", f"env_steps {task.env_steps}",
                 f"return {ret:.1f}" if ret is not None else "return -"]
        if "eval_return_mean" in metrics:
            parts.append(f"eval {metrics['eval_return_mean']:.1f}")
        if "sps" in metrics:
            parts.append(f"sps {metrics['sps']:.0f}")
        print(f"[{self.label or task.name}] " + "  ".join(parts), file=self.stream, flush=True)


class TensorBoardLog:
    """Every numeric metric of each epoch as a TensorBoard scalar (x axis: env steps)."""

    def __init__(self, logdir: str | Path) -> None:
        try:
            import tensorboard  # noqa: F401
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError("--tensorboard needs the tensorboard package: "
                             "pip install tensorboard") from None
        self.writer = SummaryWriter(log_dir=str(logdir))

    def on_epoch_end(self, task: Any, metrics: dict[str, Any]) -> None:
        for key, value in metrics.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                self.writer.add_scalar(key, value, global_step=task.env_steps)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class ProgressBar:
    """A tqdm bar over env steps (steps per second, recent return, ETA) for a terminal."""

    def __init__(self, epochs: int, stream: TextIO | None = None) -> None:
        self.epochs, self.stream = epochs, stream or sys.stderr
        self.bar: Any = None

    def on_epoch_end(self, task: Any, metrics: dict[str, Any]) -> None:
        from tqdm import tqdm

        if self.bar is None:  # the total is known once the first epoch has run
            start = task.history[-2]["env_steps"] if len(task.history) > 1 else 0
            per_epoch = max(task.env_steps - start, 1)
            self.bar = tqdm(total=per_epoch * self.epochs, initial=start, unit="step",
                            unit_scale=True, desc=task.name, file=self.stream,
                            dynamic_ncols=True, smoothing=0.3)
            self._last = start
        self.bar.update(task.env_steps - self._last)
        self._last = task.env_steps
        ret = metrics.get("return_mean")
        post = {"epoch": f"{task.epoch}/{self.epochs}",
                "return": f"{ret:.1f}" if ret is not None else "-"}
        if "eval_return_mean" in metrics:
            post["eval"] = f"{metrics['eval_return_mean']:.1f}"
        self.bar.set_postfix(post, refresh=True)
        if task.epoch >= self.epochs or task.stop_reason is not None:
            self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def progress_observer(epochs: int, stream: TextIO | None = None,
                      label: str | None = None) -> ProgressLog | ProgressBar:
    """A tqdm bar when ``stream`` (stderr) is a terminal and no Orion trial runs; plain lines
    otherwise (logs, pipes, tests, ``orion hunt``), and always with a ``label`` (one of a
    population's members: several bars on one terminal line would overwrite each other)."""
    stream = stream or sys.stderr
    if label is not None:
        return ProgressLog(epochs, stream, label)
    try:
        tty = stream.isatty()
    except (AttributeError, ValueError):
        tty = False
    if tty and not os.environ.get("ORION_TRIAL_ID"):
        try:
            import tqdm  # noqa: F401
        except ImportError:
            return ProgressLog(epochs, stream)
        return ProgressBar(epochs, stream)
    return ProgressLog(epochs, stream)
