"""Env-id resolution: which gymnasium env an id names, with a one-line error when none.

rltasks' own envs (the goal envs of ``rltasks.envs.goal``, the pixel env of
``rltasks.envs.catch``) are registered on import; the
envs of installed optional packages (the ``robotics`` extra's gymnasium-robotics) are
registered the first time an id is not found, so importing rltasks stays cheap.
"""

from __future__ import annotations

import contextlib
import difflib
import functools
import importlib
import importlib.util
import io
import warnings
from typing import Any

import gymnasium as gym

from rltasks.envs import catch, goal

goal.register()
catch.register()


def split_env_id(env_id: str) -> tuple[str | None, str]:
    """``"mypkg.envs:MyEnv-v0"`` -> ``("mypkg.envs", "MyEnv-v0")``; ``(None, env_id)`` for a
    plain id. The ``module:id`` form is gymnasium's: importing the module registers the env."""
    module, colon, name = env_id.partition(":")
    return (module, name) if colon else (None, env_id)


def import_env_module(module: str) -> None:
    """Import the module an env id names (it registers the env), or a one-line ValueError."""
    try:
        importlib.import_module(module)
    except Exception as err:  # the user's module: anything it raises is a bad env id
        raise ValueError(f"cannot import {module!r}, the module of the env id "
                         f"'{module}:...' ({type(err).__name__}: {err}); install it or put it "
                         f"on PYTHONPATH") from None


def check_env_id(env_id: str) -> gym.envs.registration.EnvSpec:
    """Return the spec of ``env_id`` or raise a one-line ``ValueError`` naming close matches.

    ``module:EnvId-v0`` imports ``module`` first, as ``gymnasium.make`` does."""
    module, name = split_env_id(env_id)
    if module is not None:
        import_env_module(module)
    try:
        return gym.spec(name)
    except gym.error.Error:
        pass
    if _register_optional_envs():
        return check_env_id(env_id)
    if (name.startswith("ALE/") or "NoFrameskip" in name) and not importlib.util.find_spec(
            "ale_py"):
        raise ValueError(f"{name} is an Atari game: ale-py (with its ROMs) is not installed; "
                         f"pip install 'rltasks[atari]'")
    close = difflib.get_close_matches(name, list(gym.registry), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else (
        "list them with: python -c 'import gymnasium; gymnasium.pprint_registry()'")
    where = f" (after importing {module!r})" if module else ""
    raise ValueError(f"unknown env id {name!r}: not registered with gymnasium{where}; {hint}")


def is_ale_id(env_id: str) -> bool:
    """Whether ``env_id`` names an Atari game of ale-py (``ALE/Pong-v5``,
    ``PongNoFrameskip-v4``); False for an unknown id."""
    try:
        entry = check_env_id(env_id).entry_point
    except ValueError:
        return False
    return isinstance(entry, str) and entry.startswith("ale_py")


def atari_settings(spec: gym.envs.registration.EnvSpec) -> dict[str, Any]:
    """What an ALE id's spec says of its game beyond the game's name, as ale-py's vector env
    takes it: sticky actions (0.25 for ``-v5``, none for ``NoFrameskip-v4``), the action set
    and the frame cap of an episode."""
    return {"repeat_action_probability": spec.kwargs.get("repeat_action_probability", 0.0),
            "full_action_space": spec.kwargs.get("full_action_space", False),
            "max_num_frames_per_episode": spec.kwargs.get("max_num_frames_per_episode",
                                                          108_000)}


@functools.cache
def _action_set(game: str, full_action_space: bool) -> tuple[int, ...]:
    import ale_py

    ale_py.ALEInterface.setLoggerMode(ale_py.LoggerMode.Error)  # as ale-py's AtariEnv does
    ale = ale_py.ALEInterface()
    ale.loadROM(ale_py.roms.get_rom_path(game))
    actions = ale.getLegalActionSet() if full_action_space else ale.getMinimalActionSet()
    return tuple(a.value for a in actions)


def fire_action(spec: gym.envs.registration.EnvSpec) -> int | None:
    """The index of FIRE in an ALE id's action set (minimal or full, as the spec says), or
    None when the game has no FIRE: the action a lost life is followed by, as SB3's and
    CleanRL's ``FireResetEnv`` after ``EpisodicLifeEnv`` do."""
    import ale_py

    full = bool(atari_settings(spec)["full_action_space"])
    actions = _action_set(str(spec.kwargs["game"]), full)
    fire = ale_py.Action.FIRE.value
    return actions.index(fire) if fire in actions else None


#: the extra that installs what the envs of an entry-point package need
EXTRAS = {"gymnasium.envs.box2d": "box2d", "gymnasium.envs.mujoco": "mujoco",
          "gymnasium_robotics": "robotics", "ale_py": "atari"}


def missing_extra(spec: gym.envs.registration.EnvSpec, err: Exception) -> ValueError:
    """The one-line error for an env whose optional dependency is not installed."""
    entry = spec.entry_point if isinstance(spec.entry_point, str) else ""
    extra = next((x for prefix, x in EXTRAS.items() if entry.startswith(prefix)), None)
    fix = (f"pip install 'rltasks[{extra}]'" if extra else
           "install the package the env needs")
    detail = str(err).splitlines()[0] if str(err) else type(err).__name__
    return ValueError(f"{spec.id} needs a package that is not installed ({detail}); {fix}")


def make_env(spec: gym.envs.registration.EnvSpec, **kwargs: Any) -> gym.Env:
    """``gymnasium.make`` with a one-line error naming the extra to install when the env's
    optional dependency (Box2D, MuJoCo...) is missing."""
    try:
        return gym.make(spec.id, **kwargs)
    except (gym.error.DependencyNotInstalled, ImportError) as err:
        raise missing_extra(spec, err) from None


# the `robotics` extra (Fetch, Adroit...) and the `atari` extra (ALE/Pong-v5...)
_OPTIONAL_ENV_PACKAGES = ["ale_py", "gymnasium_robotics"]


def _register_optional_envs() -> bool:
    """Register the envs of installed optional packages, once each; True if any was new. A
    package not found is looked for again next time (installed since, or found then)."""
    registered = False
    for name in list(_OPTIONAL_ENV_PACKAGES):
        if importlib.util.find_spec(name) is None:
            continue
        _OPTIONAL_ENV_PACKAGES.remove(name)
        # gymnasium-robotics warns about old Adroit versions, and prints a notice about
        # them to stderr on import (farama_notifications): neither is the user's business
        with warnings.catch_warnings(), contextlib.redirect_stderr(io.StringIO()):
            warnings.simplefilter("ignore")
            gym.register_envs(importlib.import_module(name))
        registered = True
    return registered
