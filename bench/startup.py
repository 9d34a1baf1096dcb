"""Start-up time of ``scripts/ppo.py``: seconds from launch to the first env step.

Every Orion trial is a new process and pays this before it learns anything (target < 2 s).

How: the bench writes a small ``sitecustomize.py`` into a temp dir that it puts on the
child's ``PYTHONPATH`` (nothing is added to the package). When ``RLTASKS_STARTUP_PROBE``
names an output file, that module installs an import hook (a ``sys.meta_path`` finder)
that times the imports of ``torch``, ``gymnasium``, ``rltasks.trial.run`` and ``torch._dynamo``
(cumulative: a nested import counts in its parent too), records the call stack that first
imports ``torch._dynamo``, and wraps ``rltasks.envs.VecLoader.step`` and
``rltasks.tasks.ppo.PPO.update`` once imported, to note ``time.time()`` at the first env
step and at the end of the first update (20 Adam steps); it writes everything as JSON from
an ``atexit`` handler registered first, so it runs last ("last atexit handler"). The clock
starts in the parent, just before ``Popen`` of
``python scripts/ppo.py --epochs 1 --steps-per-epoch 256 --workdir <fresh tmp dir>``
(so interpreter start-up counts); "process exit" is when the parent's wait returns, so the
gap between the two is interpreter teardown, which every trial pays too.
Repeated ``--repeat`` times (default 5); medians and minima are printed.

It also checks, in a separate subprocess, whether ``torch._dynamo`` (about 1 s to import)
has been imported after ``make_task``, ``init`` and one ``task.fit(1)``, and who imports it.
``--importtime`` adds the largest cumulative entries of one ``python -X importtime`` run.

    .venv/bin/python bench/startup.py [--repeat 5] [--importtime]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "ppo.py"
TARGET = 2.0  # seconds from launch to the first env step, from the issue
PROBE_VAR = "RLTASKS_STARTUP_PROBE"

SITECUSTOMIZE = textwrap.dedent('''
    """Start-up probe of bench/startup.py; inert unless $RLTASKS_STARTUP_PROBE is set."""
    import os
    import sys
    import time

    _OUT = os.environ.get("RLTASKS_STARTUP_PROBE")
    if _OUT:
        import atexit
        import importlib.abc
        import json

        _EVENTS = {"python_up": time.time()}
        _TIMED = ("torch", "gymnasium", "rltasks.trial.run", "torch._dynamo")

        def _stack():
            import traceback

            frames = [f for f in traceback.extract_stack()[:-3]
                      if "importlib" not in f.filename and "sitecustomize" not in f.filename]
            return [f"{f.filename}:{f.lineno} {f.name}" for f in frames[-8:]]

        def _first(key, fn):
            def wrapper(*args, **kwargs):
                out = fn(*args, **kwargs)
                if key not in _EVENTS:
                    _EVENTS[key] = time.time()
                    _EVENTS[key + "_dynamo"] = "torch._dynamo" in sys.modules
                return out
            return wrapper

        _PATCHES = {
            "rltasks.envs": lambda m: setattr(m.VecLoader, "step",
                                              _first("first_step", m.VecLoader.step)),
            # the update hook was called ``_update`` before it became ``update``
            "rltasks.tasks.ppo": lambda m: [
                setattr(m.PPO, n, _first("first_update", getattr(m.PPO, n)))
                for n in ("_update", "update") if n in vars(m.PPO)],
        }

        class _Probe(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name not in _TIMED and name not in _PATCHES:
                    return None
                for finder in sys.meta_path:
                    if finder is self or not hasattr(finder, "find_spec"):
                        continue
                    spec = finder.find_spec(name, path, target)
                    if spec is not None:
                        break
                else:
                    return None
                if name == "torch._dynamo":
                    _EVENTS["dynamo_imported_by"] = _stack()
                run = spec.loader.exec_module

                def exec_module(module):
                    start = time.time()
                    run(module)
                    if name in _TIMED:
                        _EVENTS["import " + name] = time.time() - start
                    if name in _PATCHES:
                        _PATCHES[name](module)

                spec.loader.exec_module = exec_module
                return spec

        sys.meta_path.insert(0, _Probe())

        @atexit.register
        def _dump():
            _EVENTS["exit"] = time.time()
            with open(_OUT, "w") as f:
                json.dump(_EVENTS, f)
''')

DYNAMO_CHECK = textwrap.dedent('''
    import json, sys
    import rltasks
    seen = {}
    task = rltasks.make_task("ppo", env="CartPole-v1", num_envs=8, seed=0, steps_per_epoch=256)
    seen["after make_task"] = "torch._dynamo" in sys.modules
    task.init()
    seen["after init"] = "torch._dynamo" in sys.modules
    task.fit(1)
    seen["after fit(1)"] = "torch._dynamo" in sys.modules
    print(json.dumps(seen))
''')

ROWS = [  # (section, label, key)
    ("seconds since launch", "python up (sitecustomize runs)", "python_up"),
    ("seconds since launch", "first env step", "first_step"),
    ("seconds since launch", "first update done (20 Adam steps)", "first_update"),
    ("seconds since launch", "last atexit handler (run finished)", "exit"),
    ("seconds since launch", "process exit (after interpreter teardown)", "wall"),
    ("import durations", "import torch", "import torch"),
    ("import durations", "import gymnasium", "import gymnasium"),
    ("import durations", "import rltasks.trial.run (incl. nested torch)",
     "import rltasks.trial.run"),
    ("import durations", "import torch._dynamo", "import torch._dynamo"),
]


def child_env(probe_dir: Path, out: Path | None) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(probe_dir),
                                                      env.get("PYTHONPATH")]))
    env.pop(PROBE_VAR, None)
    if out is not None:
        env[PROBE_VAR] = str(out)
    return env


def one_launch(probe_dir: Path) -> dict:
    """Run the script once from a fresh workdir; return event times relative to launch."""
    with tempfile.TemporaryDirectory(prefix="rltasks-startup-") as tmp:
        out = Path(tmp) / "events.json"
        cmd = [sys.executable, str(SCRIPT), "--epochs", "1", "--steps-per-epoch", "256",
               "--workdir", str(Path(tmp) / "run")]
        env = child_env(probe_dir, out)
        launched = time.time()
        proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
        ended = time.time()
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr}")
        events = json.loads(out.read_text())
    times = {k: v - launched for k, v in events.items()
             if k in ("python_up", "first_step", "first_update", "exit")}
    times["wall"] = ended - launched
    times.update({k: v for k, v in events.items() if k.startswith("import ")})
    times["dynamo_at_first_step"] = events.get("first_step_dynamo")
    times["dynamo_imported_by"] = events.get("dynamo_imported_by")
    return times


def dynamo_check(probe_dir: Path) -> tuple[dict, list[str] | None]:
    with tempfile.TemporaryDirectory(prefix="rltasks-startup-") as tmp:
        out = Path(tmp) / "events.json"
        proc = subprocess.run([sys.executable, "-c", DYNAMO_CHECK], env=child_env(probe_dir, out),
                              cwd=ROOT, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"dynamo check failed:\n{proc.stderr}")
        return json.loads(proc.stdout.splitlines()[-1]), json.loads(
            out.read_text()).get("dynamo_imported_by")


def importtime(probe_dir: Path, top: int = 12) -> list[tuple[float, str]]:
    """The ``top`` largest cumulative import times of one ``python -X importtime`` run."""
    with tempfile.TemporaryDirectory(prefix="rltasks-startup-") as tmp:
        cmd = [sys.executable, "-X", "importtime", str(SCRIPT), "--epochs", "1",
               "--steps-per-epoch", "256", "--workdir", str(Path(tmp) / "run")]
        proc = subprocess.run(cmd, env=child_env(probe_dir, None), cwd=ROOT,
                              capture_output=True, text=True)
    rows = []
    for line in proc.stderr.splitlines():
        if line.startswith("import time:") and "|" in line and "cumulative" not in line:
            _, cumulative, name = line[len("import time:"):].split("|")
            rows.append((int(cumulative) / 1e6, name.rstrip()))
    return sorted(rows, reverse=True)[:top]


def short(frame: str) -> str:
    for prefix in (str(ROOT) + "/", "site-packages/"):
        if prefix in frame:
            frame = frame.split(prefix, 1)[1]
    return frame


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--importtime", action="store_true",
                        help="also show the largest entries of one python -X importtime run")
    args = parser.parse_args()
    import torch

    print(f"start-up of scripts/ppo.py --epochs 1 --steps-per-epoch 256 (fresh workdir), "
          f"{args.repeat} launches")
    print(f"machine: {platform.machine()} {os.cpu_count()} cpus, python "
          f"{platform.python_version()}, torch {torch.__version__}, torch threads "
          f"{os.environ.get('RLTASKS_THREADS', '1')} (RLTASKS_THREADS), load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="rltasks-probe-") as probe:
        probe_dir = Path(probe)
        (probe_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
        runs = [one_launch(probe_dir) for _ in range(args.repeat)]
        seen, culprit = dynamo_check(probe_dir)
        top = importtime(probe_dir) if args.importtime else []

    print()
    print("| seconds | median | min |")
    print("|---|---:|---:|")
    section = None
    for part, label, key in ROWS:
        if part != section:
            section = part
            print(f"| *{part}* | | |")
        values = [r[key] for r in runs if key in r]
        if values:
            print(f"| {label} | {statistics.median(values):.2f} | {min(values):.2f} |")
        else:
            print(f"| {label} | - | - |")
    first = statistics.median(r["first_step"] for r in runs)
    verdict = "met" if first < TARGET else "NOT met"
    print(f"\ntarget: first env step < {TARGET:g} s after launch -> median {first:.2f} s: "
          f"{verdict}")

    at_step = sum(bool(r["dynamo_at_first_step"]) for r in runs)
    print(f"torch._dynamo already imported at the first env step: {at_step}/{len(runs)} launches")
    print("torch._dynamo in sys.modules (separate process): "
          + ", ".join(f"{k}: {'yes' if v else 'no'}" for k, v in seen.items()))
    if culprit:
        print("first imported from (innermost last):")
        for frame in culprit:
            print(f"    {short(frame)}")
    if top:
        print("\nlargest cumulative imports, one `python -X importtime` run (seconds):")
        for seconds, name in top:
            print(f"  {seconds:6.2f}  {name}")


if __name__ == "__main__":
    main()
