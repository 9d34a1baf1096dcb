"""Env-state snapshots: the exact state of a loader's sub-envs as plain values.

With ``env_state="snapshot"`` a checkpoint holds the running episodes, so an epoch no longer
has to start from reset envs (a 1000-step MuJoCo episode is not cut at every epoch's end)
and a resumed run still follows the path of one that never stopped. A snapshot holds only
msgpack-serialisable values (arrays, numbers, strings, lists, dicts), never pickled objects:
the random generators as the JSON of their ``bit_generator.state``, as ``Task`` does.

Capturable are the envs whose every piece of between-step state rltasks knows, by exact
class (a subclass may keep more):

- gymnasium's classic control envs, through ``gym.make`` (``CLASSIC``: the attributes their
  ``step`` reads besides ``np_random``), and the numpy-vectorized CartPole (``NATIVE``);
- gymnasium's MuJoCo envs: ``mujoco.mj_getState``/``mj_setState`` with
  ``mjSTATE_INTEGRATION`` (time, qpos, qvel, act, ctrl, warm start, applied forces, mocap,
  user data...), plus ``MUJOCO_DERIVED``, the positions that Ant, Humanoid, Reacher and
  Pusher read *before* they step (computed by the previous step, not part of any mjState);
- for each: its ``np_random`` and its spaces' generators, and the counters of the wrappers
  ``gym.make`` adds (``WRAPPERS``: TimeLimit, OrderEnforcing, PassiveEnvChecker, and
  RecordEpisodeStatistics).

Not capturable (``why_not`` says why; those loaders reset every env at every epoch): other
envs (Box2D, user envs, rltasks' goal envs, whose hindsight buffer ends an episode at every
epoch anyway), unknown wrappers, and ``async`` vectorization, whose envs live in worker
processes.
"""

from __future__ import annotations

import json
from collections import deque
from typing import Any

import numpy as np
from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv, VectorEnv

from rltasks.envs.pool import NO_STATE

#: what ``env_state`` may be: snapshot when the envs can be captured, else reset ("auto")
ENV_STATES = ("auto", "snapshot", "reset")
#: ``resolve``'s reason for reset mode on envs that could be captured
ASKED = "env_state='reset' was asked for"

_CLASSIC = "gymnasium.envs.classic_control."
#: the classic control envs (exact class) -> the attributes their next step or render reads
CLASSIC: dict[str, tuple[str, ...]] = {
    _CLASSIC + "cartpole.CartPoleEnv": ("state", "steps_beyond_terminated"),
    _CLASSIC + "acrobot.AcrobotEnv": ("state",),
    _CLASSIC + "mountain_car.MountainCarEnv": ("state",),
    _CLASSIC + "continuous_mountain_car.Continuous_MountainCarEnv": ("state",),
    _CLASSIC + "pendulum.PendulumEnv": ("state", "last_u"),
}
#: gymnasium's numpy-vectorized CartPole: its batched state, step counters and flags
NATIVE = (_CLASSIC + "cartpole.CartPoleVectorEnv",
          ("state", "steps", "prev_done", "low", "high", "steps_beyond_terminated"))
#: MuJoCo envs: the module of gymnasium's MuJoCo envs and of their base class
MUJOCO, MUJOCO_BASE = "gymnasium.envs.mujoco.", "gymnasium.envs.mujoco.mujoco_env.MujocoEnv"
#: derived mjData fields an env reads before stepping (body positions and centres of mass)
MUJOCO_DERIVED = ("xpos", "xipos")
#: the wrappers of ``gym.make`` (exact class) -> their counters and flags
WRAPPERS: dict[str, tuple[str, ...]] = {
    "gymnasium.wrappers.common.TimeLimit": ("_elapsed_steps",),
    # stateless: discrete or dict observations as one vector (``rltasks.envs.flat``)
    "gymnasium.wrappers.transform_observation.FlattenObservation": (),
    "gymnasium.wrappers.common.OrderEnforcing": ("_has_reset",),
    # its ``_previous_data`` (the last obs and info, kept for a one-off data-reuse warning
    # between the first steps) is saved as whether it is pending (``_CHECKER``)
    "gymnasium.wrappers.common.PassiveEnvChecker": (
        "checked_reset", "checked_step", "checked_render", "checked_data_reuse"),
    "gymnasium.wrappers.common.RecordEpisodeStatistics": (
        "episode_count", "episode_start_time", "episode_returns", "episode_lengths",
        "time_queue", "return_queue", "length_queue"),
}
_CHECKER = "gymnasium.wrappers.common.PassiveEnvChecker"
_BIT_GENERATORS = {cls.__name__: cls for cls in (
    np.random.PCG64, np.random.PCG64DXSM, np.random.MT19937, np.random.Philox,
    np.random.SFC64)}


def _name(obj: Any) -> str:
    cls = type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def _chain(env: Any) -> list[Any]:
    """The wrappers of ``env``, outermost first, then the env itself."""
    chain = [env]
    while hasattr(chain[-1], "env") and chain[-1] is not chain[-1].unwrapped:
        chain.append(chain[-1].env)
    return chain


def _is_mujoco(env: Any) -> bool:
    return _name(env).startswith(MUJOCO) and any(
        f"{c.__module__}.{c.__qualname__}" == MUJOCO_BASE for c in type(env).__mro__)


# -- what can be captured --------------------------------------------------------------------
def why_not(venv: VectorEnv) -> str | None:
    """Why the sub-envs of ``venv`` cannot be captured, or None when they can."""
    if isinstance(venv, AsyncVectorEnv):
        return "its envs live in worker processes (vectorization='async')"
    if _name(venv) == NATIVE[0]:
        return None
    if any(cls.__module__.startswith("envpool.") for cls in type(venv).__mro__):
        return NO_STATE
    if type(venv).__name__ == "AtariVectorEnv":
        return "ale-py's AtariVectorEnv does not hand out its emulators' states"
    if not isinstance(venv, SyncVectorEnv):
        return f"rltasks cannot capture a {type(venv).__name__}"
    for env in venv.envs:
        *wrappers, base = _chain(env)
        for wrapper in wrappers:
            if _name(wrapper) not in WRAPPERS:
                return f"rltasks cannot capture the {type(wrapper).__name__} wrapper's state"
        if _name(base) not in CLASSIC and not _is_mujoco(base):
            return (f"{type(base).__name__} keeps state rltasks cannot capture: it captures "
                    f"gymnasium's classic control and MuJoCo envs")
    return None


def resolve(env_id: str, requested: str, reason: str | None) -> tuple[str, str | None]:
    """The mode in force for ``requested`` when the envs' ``why_not`` is ``reason``, and why
    it is not ``snapshot`` (None when it is): the envs' reason when they cannot be captured,
    else ``ASKED``. "snapshot" on envs that cannot be captured is a one-line ``ValueError``."""
    if requested not in ENV_STATES:
        raise ValueError(f"env_state={requested!r} is not one of {ENV_STATES}")
    if reason is None:
        return ("reset", ASKED) if requested == "reset" else ("snapshot", None)
    if requested == "snapshot":
        raise ValueError(f"env_state='snapshot': the state of {env_id}'s envs cannot be saved "
                         f"({reason}); use env_state='reset' (--env-state reset)")
    return "reset", f"the state of {env_id}'s envs cannot be saved ({reason})"


# -- plain values ------------------------------------------------------------------------------
def _value(value: Any) -> Any:
    """A copy of an attribute's value made of plain values (deques and tuples as lists)."""
    if isinstance(value, np.ndarray):
        return value.copy()
    if isinstance(value, deque | tuple | list):
        return [_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str | np.generic):
        return value
    raise TypeError(f"cannot snapshot a {type(value).__name__}")


def _attrs(obj: Any, names: tuple[str, ...]) -> dict[str, Any]:
    return {k: _value(vars(obj)[k]) for k in names if k in vars(obj)}


def _set_attrs(obj: Any, names: tuple[str, ...], values: dict[str, Any]) -> None:
    """Set ``obj``'s attributes ``names`` to ``values`` (an attribute absent there is
    removed: the env had not set it yet); a deque stays a deque of its maximum length."""
    for name in names:
        if name not in values:
            vars(obj).pop(name, None)
            continue
        value, old = values[name], vars(obj).get(name)
        if isinstance(value, np.ndarray):
            value = value.copy()
        elif isinstance(old, deque):
            value = deque(value, maxlen=old.maxlen)
        setattr(obj, name, value)


def _rng(gen: np.random.Generator | None) -> str | None:
    return None if gen is None else json.dumps(gen.bit_generator.state)


def _make_rng(state: str | None) -> np.random.Generator | None:
    """The generator of a ``_rng`` state (only numpy's own bit generators)."""
    if state is None:
        return None
    value = json.loads(state)
    cls = _BIT_GENERATORS.get(value.get("bit_generator")) if isinstance(value, dict) else None
    if cls is None:
        raise ValueError("the env snapshot holds a random generator rltasks does not know")
    bit_generator = cls()
    bit_generator.state = value
    return np.random.Generator(bit_generator)


def _rngs(env: Any) -> dict[str, Any]:
    """An env's generator (and its seed) and its spaces' generators."""
    return {"np_random": _rng(env._np_random), "np_random_seed": env._np_random_seed,
            "spaces": [_rng(getattr(env, name)._np_random)
                       for name in ("action_space", "observation_space")]}


def _set_rngs(env: Any, state: dict[str, Any]) -> None:
    env._np_random = _make_rng(state["np_random"])
    env._np_random_seed = state["np_random_seed"]
    for name, rng in zip(("action_space", "observation_space"), state["spaces"], strict=True):
        getattr(env, name)._np_random = _make_rng(rng)


# -- capture and restore ---------------------------------------------------------------------
def _mujoco(env: Any) -> dict[str, Any]:
    import mujoco  # the env is a MuJoCo env: mujoco is imported already (optional extra)

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.empty(mujoco.mj_stateSize(env.model, spec), np.float64)
    mujoco.mj_getState(env.model, env.data, state, spec)
    return {"state": state, **{k: getattr(env.data, k).copy() for k in MUJOCO_DERIVED}}


def _set_mujoco(env: Any, snap: dict[str, Any]) -> None:
    import mujoco  # the env is a MuJoCo env: mujoco is imported already (optional extra)

    spec = mujoco.mjtState.mjSTATE_INTEGRATION
    state = np.asarray(snap["state"], np.float64)
    if state.shape != (mujoco.mj_stateSize(env.model, spec),):
        raise ValueError("the env snapshot does not fit this MuJoCo model")
    mujoco.mj_setState(env.model, env.data, state, spec)
    for key in MUJOCO_DERIVED:
        getattr(env.data, key)[:] = snap[key]


def _wrapper(wrapper: Any) -> dict[str, Any]:
    values = _attrs(wrapper, WRAPPERS[_name(wrapper)])
    if _name(wrapper) == _CHECKER:
        values["reuse_check_pending"] = wrapper._previous_data is not None
    return values


def capture_env(env: Any) -> dict[str, Any]:
    """The snapshot of one ``gym.make`` env (see the module docstring)."""
    *wrappers, base = _chain(env)
    snap: dict[str, Any] = {
        "chain": [_name(e) for e in (*wrappers, base)],
        "wrappers": [_wrapper(w) for w in wrappers],
        "rngs": _rngs(base)}
    if _is_mujoco(base):
        snap["mujoco"] = _mujoco(base)
    else:
        snap["attrs"] = _attrs(base, CLASSIC[_name(base)])
    return snap


def restore_env(env: Any, snap: dict[str, Any]) -> None:
    """Put ``capture_env``'s snapshot back into ``env``, an env of the same id."""
    *wrappers, base = _chain(env)
    if [_name(e) for e in (*wrappers, base)] != list(snap["chain"]):
        raise ValueError(f"the env snapshot is of {snap['chain'][-1]}, not {_name(base)}")
    for wrapper, values in zip(wrappers, snap["wrappers"], strict=True):
        _set_attrs(wrapper, WRAPPERS[_name(wrapper)], values)
        if _name(wrapper) == _CHECKER:  # a placeholder that shares no object with any obs
            wrapper._previous_data = (None, {}) if values["reuse_check_pending"] else None
    _set_rngs(base, snap["rngs"])
    if _is_mujoco(base):
        _set_mujoco(base, snap["mujoco"])
    else:
        _set_attrs(base, CLASSIC[_name(base)], snap["attrs"])


def capture(venv: VectorEnv) -> dict[str, Any]:
    """The snapshot of every sub-env of ``venv`` (``why_not(venv)`` must be None)."""
    if _name(venv) == NATIVE[0]:
        return {"native": _attrs(venv, NATIVE[1]), "np_random": _rng(venv._np_random),
                "np_random_seed": venv._np_random_seed}
    return {"envs": [capture_env(env) for env in venv.envs]}


def restore(venv: VectorEnv, snap: dict[str, Any]) -> None:
    """Put ``capture``'s snapshot back into ``venv``, a vector env built like the one it
    was taken of."""
    if _name(venv) == NATIVE[0]:
        if "native" not in snap:
            raise ValueError("the env snapshot is not of a numpy-vectorized env")
        state = snap["native"].get("state")
        if state is not None and np.shape(state) != (4, venv.num_envs):
            raise ValueError(f"the env snapshot holds {np.shape(state)[-1]} envs, "
                             f"not {venv.num_envs}")
        _set_attrs(venv, NATIVE[1], snap["native"])
        venv._np_random = _make_rng(snap["np_random"])
        venv._np_random_seed = snap["np_random_seed"]
        return
    envs = snap.get("envs")
    if envs is None or len(envs) != len(venv.envs):
        raise ValueError(f"the env snapshot holds {'no' if envs is None else len(envs)} "
                         f"sub-envs, not {len(venv.envs)}")
    for env, env_snap in zip(venv.envs, envs, strict=True):
        restore_env(env, env_snap)
