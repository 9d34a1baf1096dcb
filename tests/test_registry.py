"""Env-id resolution (rltasks.envs.registry): a missing optional dependency is one line naming
the extra to install, never a traceback."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.parametrize(("env", "blocked", "extra"), [
    ("LunarLander-v3", "Box2D", "box2d"),
    ("BipedalWalker-v3", "Box2D", "box2d"),
    ("Hopper-v5", "mujoco", "mujoco"),
])
def test_a_missing_extra_is_one_line_naming_it(env, blocked, extra, tmp_path):
    code = (f"import sys; sys.modules[{blocked!r}] = None\n"  # as if it were not installed
            "from rltasks.trial import main\n"
            f"sys.exit(main('ppo', ['--env', {env!r}, '--epochs', '1', '--workdir', "
            f"{str(tmp_path)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {env} needs a package"), lines
    assert f"pip install 'rltasks[{extra}]'" in lines[0]
