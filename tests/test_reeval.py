"""``rltasks best --reeval``: how many reruns run at once, and how they are run (the reruns
themselves, end to end on a real hunt: ``tests/test_cli.py``)."""

from __future__ import annotations

import sys

import pytest

from rltasks.orion import reeval
from rltasks.trial.seeds import cores


@pytest.mark.parametrize("command, jobs", [
    (["python", "scripts/ppo.py", "--env", "CartPole-v1", "--seeds", "5"], "cores"),
    (["python", "scripts/dqn.py", "--seeds", "5"], "cores"),
    # seeds trained as processes: the rerun's own processes take the cores
    (["python", "scripts/ppo.py", "--seed-processes", "--seeds", "5"], 1),
    (["python", "scripts/sac.py", "--env", "Pendulum-v1", "--seeds", "5"], 1),
    (["python", "train.py", "--seeds", "5"], 1),  # not an rltasks script
])
def test_reruns_run_one_per_core_only_where_each_is_one_process(command, jobs):
    assert reeval.default_jobs(command) == (cores() if jobs == "cores" else jobs)


def _sleeper(tag: str) -> list[str]:
    # prints when it starts and ends (wall clock), sleeping between
    return [sys.executable, "-c", "import time, sys; print('start', time.time(), flush=True); "
            f"time.sleep(0.6); print('end', time.time()); sys.exit({0 if tag != 'c' else 3})"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_run_all_runs_up_to_jobs_commands_at_once_each_line_tagged(capfd, jobs):
    codes = reeval.run_all({key: _sleeper(key) for key in "abc"}, jobs)
    assert codes == {"a": 0, "b": 0, "c": 3}
    err = capfd.readouterr().err
    spans = {}
    for tag in "abc":
        lines = [line.split() for line in err.splitlines() if line.startswith(f"[{tag}] ")]
        assert [words[1] for words in lines] == ["start", "end"]
        spans[tag] = (float(lines[0][2]), float(lines[1][2]))
    overlap = spans["a"][0] < spans["b"][1] and spans["b"][0] < spans["a"][1]
    assert overlap == (jobs == 2)  # a and b side by side with 2 jobs, one after the other
    assert spans["c"][0] >= min(spans["a"][1], spans["b"][1])  # c waits for a free slot


def test_an_interrupted_run_all_stops_the_reruns_it_started(monkeypatch):
    started = []
    real = reeval.subprocess.Popen

    def popen(*args, **kw):
        started.append(real(*args, **kw))
        return started[-1]

    monkeypatch.setattr(reeval.subprocess, "Popen", popen)
    monkeypatch.setattr(reeval.time, "sleep", lambda s: (_ for _ in ()).throw(
        KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        reeval.run_all({key: [sys.executable, "-c", "import time; time.sleep(60)"]
                        for key in "ab"}, 2)
    assert len(started) == 2 and all(proc.poll() is not None for proc in started)
