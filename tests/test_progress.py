"""The progress observer: a tqdm bar on a terminal, plain lines elsewhere and under Orion."""

from __future__ import annotations

import io

import rltasks
from rltasks.trial.observers import ProgressBar, ProgressLog, progress_observer


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_a_bar_and_pipes_or_orion_get_lines(monkeypatch):
    monkeypatch.delenv("ORION_TRIAL_ID", raising=False)
    assert isinstance(progress_observer(3, Tty()), ProgressBar)
    assert isinstance(progress_observer(3, io.StringIO()), ProgressLog)
    # a population's member: labelled lines even on a terminal (bars would share a line)
    labelled = progress_observer(3, Tty(), label="ppo seed 3")
    assert isinstance(labelled, ProgressLog) and labelled.label == "ppo seed 3"
    monkeypatch.setenv("ORION_TRIAL_ID", "abc")
    assert isinstance(progress_observer(3, Tty()), ProgressLog)


def test_the_bar_follows_env_steps_and_closes_at_the_last_epoch():
    stream = Tty()
    bar = ProgressBar(2, stream)
    task = rltasks.make_task("ppo", env="CartPole-v1", num_envs=2, steps_per_epoch=64,
                             observers=[bar])
    task.init()
    try:
        task.fit(1)
        assert bar.bar is not None and bar.bar.n == 64 and bar.bar.total == 128
        task.fit(2)
    finally:
        task.close()
    assert bar.bar is None  # closed after epoch 2
    text = stream.getvalue()
    assert "128/128" in text and "return=" in text and "epoch=2/2" in text
