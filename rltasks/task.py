"""The ``Task`` base: the contract every algorithm implements (see ``docs/design.md``).

The base owns what every algorithm shares: hyperparameter declaration and validation, the
Orion space, the epoch loop with its observers, seeding, evaluation, state aggregation and
the ``BadResume`` guard. An algorithm subclass only builds its networks (``setup``), trains
one epoch (``train_epoch``), acts greedily (``act``) and names its extra state.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable
from typing import Any, ClassVar, Protocol

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from rltasks.device import cpu_numerics, resolve_device, to_cpu
from rltasks.envs import VecLoader, derive_seed, evaluate_policy, in_process_vectorization
from rltasks.envs.images import image_layout, is_image_space
from rltasks.envs.protocol import Loader
from rltasks.envs.registry import is_ale_id
from rltasks.failpoints import failpoint
from rltasks.hparams import HP, namespaced
from rltasks.nets import BODIES, PRECISIONS
from rltasks.optim import (
    NAMESPACED_OPTIM_HPARAMS,
    OPTIM_HPARAMS,
    OPTIMIZER_HPARAMS,
    SCHEDULE_HPARAMS,
    Optimizer,
    scheduled,
    unused_hparams,
)
from rltasks.safeio import read_special

#: the make_task arguments a task's ``ENV_DEFAULTS`` may set for an env (rl-zoo3's n_envs and
#: normalize, a game-long Atari epoch), used when ``make_task`` is not given them
MAKE_DEFAULTS = ("num_envs", "norm_obs", "norm_reward", "steps_per_epoch")
#: the ``ENV_DEFAULTS`` key whose values apply to every ALE id (Atari games)
ATARI = "ALE/*"
#: env steps of the longest Atari game (108,000 frames): an Atari epoch's default length per
#: env, so that each env's first game of an epoch plays to its end (reset mode starts new
#: games every epoch: with 4,096-step epochs of 8 envs no game would last past 512 steps)
ATARI_GAME_STEPS = 27_000

#: the most envs a loader (``num_envs``) or an evaluation (``episodes``) may run at once: a
#: checkpoint's own arguments rebuild its task, so no declared count may be unbounded
MAX_ENVS = 1024

# Seed-derivation keys: one stream per purpose, all derived from the task seed.
_INIT, _TORCH, _NUMPY, _EPOCH, _EVAL = 0, 1, 2, 3, 4


class BadResume(RuntimeError):
    """Raised when a task whose ``fit`` failed is used again: its state may be half-updated."""


class NonFiniteError(ValueError):
    """A loss or statistic became NaN or infinite during training."""


class SpaceMismatch(ValueError):
    """The env's action or observation space is not one the algorithm handles.

    ``rltasks.make_task`` adds the names of the tasks that do fit the env."""

    def __init__(self, message: str, action_space: spaces.Space,
                 observation_space: spaces.Space, loader: type) -> None:
        super().__init__(message)
        self.action_space, self.observation_space, self.loader = (
            action_space, observation_space, loader)


class Observer(Protocol):
    """Hooks into the epoch loop (checkpointing, logging, early stopping)."""

    def on_epoch_end(self, task: Task, metrics: dict[str, Any]) -> None: ...


class Task:
    """An RL algorithm as a resumable, tunable task. Subclasses set ``name`` and ``HPARAMS``."""

    name: ClassVar[str] = ""
    #: the algorithm's own hyperparameters; the optimizer and schedule blocks are added
    HPARAMS: ClassVar[dict[str, HP]] = {}
    #: the task's own defaults for block hyperparameters (e.g. A2C's RMSprop)
    DEFAULTS: ClassVar[dict[str, Any]] = {}
    #: rl-zoo3 style per-env overrides of the defaults: hyperparameters, and the make_task
    #: arguments in ``MAKE_DEFAULTS`` (num_envs, norm_obs, norm_reward, steps_per_epoch) when
    #: not given
    ENV_DEFAULTS: ClassVar[dict[str, dict[str, Any]]] = {}
    DEFAULT_STEPS_PER_EPOCH: ClassVar[int] = 4096
    DEFAULT_NUM_ENVS: ClassVar[int] = 8
    #: the env scripts use when --env is not given
    DEFAULT_ENV: ClassVar[str] = "CartPole-v1"
    #: the dataloader class: gymnasium vector envs (``ParallelLoader`` for PettingZoo)
    LOADER: ClassVar[type[Loader]] = VecLoader
    #: the gymnasium space types the algorithm handles
    ACTION_SPACES: ClassVar[tuple[type[spaces.Space], ...]] = (spaces.Discrete, spaces.Box)
    OBSERVATION_SPACES: ClassVar[tuple[type[spaces.Space], ...]] = (spaces.Box,)
    #: the most dimensions a Box observation may have (flat vectors; MADDPG: agents x features)
    OBS_NDIM: ClassVar[int] = 1
    #: whether the algorithm learns from images (uint8 Box of rank 3) with a CNN ``body``
    IMAGES: ClassVar[bool] = False
    #: networks of the hidden layers' size, targets included (for the memory estimate)
    NETWORKS: ClassVar[int] = 6
    #: the curated search space (``get_space()``): hyperparameter -> Orion prior (None: its
    #: own), over rl-zoo3's sampler ranges; ``applies`` drops those this env does not use
    CURATED: ClassVar[dict[str, str | None]] = {}

    def __init__(self, env: str, num_envs: int | None = None, seed: int = 0,
                 device: str | torch.device = "cpu",
                 steps_per_epoch: int | None = None, horizon: int | None = None,
                 vectorization: str = "auto", norm_obs: bool | None = None,
                 norm_reward: bool | None = None, observers: Iterable[Observer] = (),
                 env_kwargs: dict[str, Any] | None = None, env_state: str = "auto",
                 **fixed_hparams: Any) -> None:
        specs = self.hparam_specs()
        unknown = sorted(set(fixed_hparams) - set(specs))
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {unknown} for task {self.name!r}; "
                             f"valid: {sorted(specs)}")
        env_loader = {k: v for k, v in self.env_defaults(env).items()
                      if k in MAKE_DEFAULTS}  # rl-zoo3's n_envs and normalize for this env
        steps_per_epoch = steps_per_epoch or env_loader.get("steps_per_epoch",
                                                            self.DEFAULT_STEPS_PER_EPOCH)
        num_envs = num_envs or env_loader.get("num_envs", self.DEFAULT_NUM_ENVS)
        norm_obs = env_loader.get("norm_obs", False) if norm_obs is None else norm_obs
        norm_reward = env_loader.get("norm_reward", False) if norm_reward is None else norm_reward
        if not isinstance(num_envs, (int, np.integer)) or not 1 <= num_envs <= MAX_ENVS:
            raise ValueError(f"num_envs={num_envs!r} must be an integer in [1, {MAX_ENVS}]")
        if not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed={seed!r} must be a non-negative integer")
        if not isinstance(steps_per_epoch, (int, np.integer)) or steps_per_epoch < 1:
            raise ValueError(f"steps_per_epoch={steps_per_epoch!r} must be a positive integer")
        if horizon is not None and horizon < 1:
            raise ValueError(f"horizon={horizon!r} must be a positive number of epochs")
        self.fixed: dict[str, Any] = {
            "env": env, "num_envs": int(num_envs), "seed": int(seed),
            "steps_per_epoch": int(steps_per_epoch), "horizon": horizon,
            "vectorization": vectorization, "norm_obs": bool(norm_obs),
            "norm_reward": bool(norm_reward),
            # part of the run's identity only when given: older checkpoints have none
            **({"env_kwargs": dict(env_kwargs)} if env_kwargs else {}),
            **{k: specs[k].coerce(k, v) for k, v in fixed_hparams.items()},
        }
        # not part of the run's identity (fixed): a checkpoint resumes on any device
        self.env_id, self.seed, self.device = env, int(seed), resolve_device(device)
        self.num_envs, self.steps_per_epoch, self.horizon = int(num_envs), steps_per_epoch, horizon
        self.env_kwargs = dict(env_kwargs or {})
        self.loader: Loader = self._open_loader(vectorization, norm_obs, norm_reward, env_state)
        self.observers: list[Observer] = list(observers)
        self.hp: dict[str, Any] = {}
        self.modules: dict[str, nn.Module] = {}
        self.optimizers: dict[str, Optimizer] = {}
        self.epoch = 0
        self.env_steps = 0
        self.history: list[dict[str, Any]] = []
        #: set by an observer (early stopping) to end ``fit`` after the current epoch
        self.stop_reason: str | None = None
        #: the returns of the episodes finished in the last epoch (for observers; not state)
        self.epoch_returns: list[float] = []
        self._poisoned: str | None = None
        #: hyperparameter changes of ``adopt_state_dict``, for the next history row
        self._changes: dict[str, list[Any]] | None = None

    def _open_loader(self, vectorization: str, norm_obs: bool, norm_reward: bool,
                     env_state: str) -> Loader:
        """The task's loader, its envs checked against the algorithm's spaces (closed if they
        do not fit). Its env-state mode is part of the run's identity (``fixed``) only when it
        is "snapshot": checkpoints written before snapshots, all in reset mode, have none."""
        loader = self.LOADER(self.env_id, self.num_envs, vectorization, norm_obs, norm_reward,
                             env_kwargs=self.env_kwargs, env_state=env_state)
        self.loader, self.observation_space = loader, loader.single_observation_space
        self.action_space = loader.single_action_space
        try:
            self.check_env()
        except ValueError:
            loader.close()
            raise
        if loader.env_state == "snapshot":
            self.fixed["env_state"] = "snapshot"
        #: the envs' last observations, where the next epoch starts (None: reset them first)
        self.obs: Any = None
        #: whether the epoch in progress started from reset envs: every epoch in reset mode,
        #: only a run's first in snapshot mode
        self.epoch_reset = True
        return loader

    # -- hyperparameters ----------------------------------------------------------------------
    @classmethod
    def hparam_specs(cls) -> dict[str, HP]:
        """Every hyperparameter of the task: its own, then the optimizer and schedule blocks."""
        return {**cls.HPARAMS, **OPTIM_HPARAMS, **SCHEDULE_HPARAMS}

    def defaults(self) -> dict[str, Any]:
        """Default hyperparameters for this env (class defaults, then per-env overrides; a
        per-env schedule only with a horizon, else the schedule stays constant)."""
        values = {k: hp.default for k, hp in self.hparam_specs().items()}
        values.update(self.DEFAULTS)
        # a per-env schedule over the horizon applies when there is one (a script's --epochs)
        values.update({k: v for k, v in self.env_defaults(self.env_id).items()
                       if k not in MAKE_DEFAULTS
                       and not (k.endswith("_schedule") and self.horizon is None)})
        return values

    @classmethod
    def env_defaults(cls, env_id: str) -> dict[str, Any]:
        """The task's per-env defaults for ``env_id``: its own entry, else for an ALE id the
        ``ATARI`` entry (rl-zoo3's Atari set), else none."""
        if env_id in cls.ENV_DEFAULTS:
            return cls.ENV_DEFAULTS[env_id]
        if ATARI in cls.ENV_DEFAULTS and is_ale_id(env_id):
            return cls.ENV_DEFAULTS[ATARI]
        return {}

    def get_space(self, scope: str = "curated", **fidelities: str) -> dict[str, str]:
        """Orion priors of the hyperparameters to hunt, plus ``fidelities``.

        ``scope="curated"`` (the default): the task's ``CURATED`` hyperparameters, over
        rl-zoo3's sampler ranges, that apply to this env and to the task's other choices
        (``applies``: no ``log_std_init`` without Box actions, no ``her*`` without a goal env
        and ``her``, no parameters of a noise or an exploration policy that is not the one in
        use). ``scope="all"``: every hyperparameter, each with its own prior (``precision``
        on image envs only). Either way those fixed at ``make_task`` are left out.
        """
        specs = self.hparam_specs()
        if scope == "all":  # precision only on images: a bfloat16 draw is refused elsewhere
            images = is_image_space(self.observation_space)
            space = {k: hp.prior for k, hp in specs.items()
                     if k not in self.fixed and (k != "precision" or images)}
        elif scope == "curated":
            values = {**self.defaults(), **self.fixed}
            space = {k: prior or specs[k].prior for k, prior in self.CURATED.items()
                     if k not in self.fixed and self.applies(k, values)}
        else:
            raise ValueError(f"get_space(scope={scope!r}): use 'curated' (the default) or 'all'")
        space.update(fidelities)
        return space

    def applies(self, name: str, values: dict[str, Any]) -> bool:
        """Whether hyperparameter ``name`` changes anything on this env, given the task's
        other settings ``values`` (defaults and fixed ones); subclasses add their own."""
        if name == "log_std_init":
            return isinstance(self.action_space, spaces.Box)
        images = is_image_space(self.observation_space)
        if name in ("body", "precision"):  # the CNN's kind and dtype (fixed widths)
            return images
        if name in ("hidden", "layers", "activation") and self.IMAGES:
            return not images
        return True

    def init(self, **hparams: Any) -> Task:
        """Validate hyperparameters (defaults for the missing ones) and build the agent.

        Unknown names, out-of-range values and values that contradict ``make_task`` raise
        ``ValueError``. Networks are initialised from the task seed, so two tasks built with
        the same arguments start identical. An optimizer's own hyperparameter may be given
        namespaced (``sgd.momentum=0.9``, as ``optimizer_space`` hunts them): it applies only
        when that optimizer is the chosen one, and wins over the plain ``momentum``.
        """
        self._guard()
        specs = self.hparam_specs()
        for key in hparams:
            prefix, dot, rest = key.partition(".")
            if dot and rest not in OPTIMIZER_HPARAMS.get(prefix, ()):
                raise ValueError(
                    f"unknown hyperparameter {key!r}: namespaced ones are <optimizer>.<its own>, "
                    f"one of {list(NAMESPACED_OPTIM_HPARAMS)}")
        chosen = hparams.get("optimizer", self.fixed.get("optimizer",
                                                         self.defaults()["optimizer"]))
        hparams, _ = namespaced(hparams, chosen, OPTIMIZER_HPARAMS)
        unknown = sorted(set(hparams) - set(specs))
        if unknown:
            raise ValueError(f"unknown hyperparameter(s) {unknown} for task {self.name!r}; "
                             f"valid: {sorted(specs)}")
        values = self.defaults()
        for key, value in hparams.items():
            value = specs[key].coerce(key, value)
            if key in self.fixed and self.fixed[key] != value:
                raise ValueError(f"hyperparameter {key}={value!r} contradicts the value "
                                 f"{self.fixed[key]!r} fixed at make_task")
            values[key] = value
        values.update({k: v for k, v in self.fixed.items() if k in specs})
        schedules = {k: v for k, v in values.items() if k.endswith("_schedule") and v != "constant"}
        if schedules and self.horizon is None:
            raise ValueError(f"{schedules} need a horizon: pass make_task(..., horizon=EPOCHS) "
                             f"or --horizon")
        if not schedules:  # nothing depends on the horizon: do not let it pin a checkpoint
            self.horizon = self.fixed["horizon"] = None
        check_footprint(self, values)  # before any network or buffer is built
        self.hp = values
        self.loader.gamma = float(values.get("gamma", 0.99))
        # on the CPU whatever the device: draws move to the device (rltasks.device)
        self.gen = torch.Generator().manual_seed(derive_seed(self.seed, _TORCH))
        self.np_rng = np.random.default_rng(derive_seed(self.seed, _NUMPY))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, _INIT))
            self.modules, self.optimizers = {}, {}
            self.setup()
        for module in self.modules.values():  # initialised on the CPU: the same on every device
            module.to(self.device)  # in place: the optimizers keep these very parameters
        self.epoch, self.env_steps, self.history = 0, 0, []
        self.obs = None  # a new run: its first epoch resets the envs
        return self

    def image_torso(self, orthogonal: bool = True) -> tuple[nn.Module, int] | None:
        """The CNN torso of an image task on image observations (``body``, computing in
        ``precision``) and its width; ``None`` on vector observations, where a precision
        other than float32 is a one-line ``ValueError`` (it would change nothing)."""
        hp, space = self.hp, self.observation_space
        if not is_image_space(space):
            if hp.get("precision", "float32") != "float32":
                raise ValueError(
                    f"precision={hp['precision']!r} applies to the CNN body of image "
                    f"observations; {self.env_id}'s are {space.shape} vectors: leave "
                    f"precision at 'float32'")
            return None
        c, h, w, last = image_layout(space.shape)
        return BODIES[hp["body"]](c, h, w, last, orthogonal=orthogonal,
                                  low=PRECISIONS[hp["precision"]])

    def hparams(self) -> dict[str, Any]:
        """The hyperparameters in force (after ``init``), without those the chosen optimizer
        ignores (``momentum`` for adam, ``beta1`` for sgd)."""
        unused = unused_hparams(self.hp["optimizer"]) if self.hp else set()
        return {k: v for k, v in self.hp.items() if k not in unused}

    # -- the loop -------------------------------------------------------------------------------
    def fit(self, epochs: int) -> list[dict[str, Any]]:
        """Train until ``self.epoch == epochs`` (absolute, so a no-op once past it), or until
        an observer sets ``stop_reason`` (early stopping).

        An epoch starts from envs reset with seeds derived from ``(seed, epoch)``: every
        epoch in reset mode (``loader.env_state``), in snapshot mode only a run's first one,
        and later epochs continue the running episodes (``self.obs``, the loader's state).
        Observers run after each epoch. If anything raises, the task is poisoned
        (``BadResume``).
        """
        self._guard()
        if not self.hp:
            raise RuntimeError("call init() before fit()")
        if int(epochs) != epochs or epochs < 0:
            raise ValueError(f"epochs={epochs!r} must be a non-negative integer")
        with cpu_numerics():
            self._run_epochs(epochs)
        return self.history

    def _run_epochs(self, epochs: int) -> None:
        """``fit``'s loop: train, record and observe epochs until ``epochs`` or a stop."""
        try:
            while self.epoch < epochs and self.stop_reason is None:
                self.begin_epoch()
                self.end_epoch(self.train_epoch())
        except BaseException as err:
            self.poison(err)
            raise

    def poison(self, err: BaseException) -> None:
        """Mark the task unusable after ``err`` broke an epoch half way (``BadResume``)."""
        self._poisoned = f"{type(err).__name__}: {err}"

    def begin_epoch(self) -> None:
        """Start an epoch: reset the envs from ``(seed, epoch)`` where the env-state mode
        says so (every epoch in reset mode, a run's first in snapshot mode)."""
        self.epoch_reset = self.loader.env_state != "snapshot" or self.obs is None
        if self.epoch_reset:
            self.obs = self.loader.reset(derive_seed(self.seed, _EPOCH, self.epoch))

    def end_epoch(self, metrics: dict[str, float]) -> None:
        """Close an epoch trained by ``train_epoch`` (or a population's lockstep): its
        history row (episodes, returns, the update's ``metrics``), checked finite, then the
        observers."""
        episodes = self.loader.pop_episodes()
        returns = [r for r, _, _ in episodes]
        self.epoch_returns = [float(r) for r in returns]
        successes = [s for _, _, s in episodes if s is not None]
        row = {"epoch": self.epoch + 1, "env_steps": self.env_steps,
               "episodes": len(episodes),
               "return_mean": float(np.mean(returns)) if returns else None,
               "length_mean": float(np.mean([n for _, n, _ in episodes]))
               if episodes else None,
               **({"success_rate": float(np.mean(successes))} if successes else {}),
               **metrics}
        if self._changes:
            row["hparams_changed"], self._changes = self._changes, None
        _check_finite(row, self.epoch + 1, self.hp)
        self.epoch += 1
        self.history.append(row)
        # observers may annotate their copy (eval score, steps per second) for the
        # log; the history row itself stays a pure function of the computation.
        shown = dict(row)
        for observer in self.observers:
            observer.on_epoch_end(self, shown)

    def epoch_unit(self) -> tuple[int, str]:
        """The env steps an epoch is made of whole multiples of, and why: every env steps
        together (an algorithm with longer units, whole rollouts, says so)."""
        return self.num_envs, f"{self.num_envs} envs step together"

    def epoch_steps(self) -> int:
        """Env steps one epoch really takes: ``steps_per_epoch`` rounded up to whole units."""
        unit = self.epoch_unit()[0]
        return -(-self.steps_per_epoch // unit) * unit

    def progress(self) -> float:
        """Fraction of the horizon done, from the env-step counter (drives every schedule):
        the horizon is ``horizon`` epochs of ``epoch_steps()``, the steps they really take."""
        if self.horizon is None:
            return 0.0
        return self.env_steps / (self.horizon * self.epoch_steps())

    def scheduled(self, key: str, schedule_key: str) -> float:
        """Current value of hyperparameter ``key`` under the schedule named by ``schedule_key``."""
        return scheduled(self.hp[key], self.hp[schedule_key], self.progress())

    @torch.inference_mode()
    def evaluate(self, episodes: int = 10) -> dict[str, float]:
        """Mean/std return and mean length of ``episodes`` deterministic episodes.

        Eval envs have their own seeds, fixed for the task, and the training RNGs are not
        touched: evaluating never changes the state, and the same policy scores the same.
        """
        self._guard()
        if not 1 <= episodes <= MAX_ENVS:
            raise ValueError(f"episodes={episodes!r} must be in [1, {MAX_ENVS}] (one env each)")
        vectorization = in_process_vectorization(self.loader.vectorization)
        loader = self.LOADER(self.env_id, num_envs=episodes, vectorization=vectorization,
                             env_kwargs=self.env_kwargs)
        with cpu_numerics():
            return evaluate_policy(loader, self.act, derive_seed(self.seed, _EVAL),
                                   normalize=self.loader.normalize_obs)

    # -- state ---------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything the next epoch needs; only msgpack-serialisable values and tensors, the
        tensors on the CPU whatever ``device`` the task runs on (``to_cpu``): a run saved on
        a GPU resumes on the CPU and back. On the CPU its tensors and replay arrays are the
        task's own (as ``nn.Module.state_dict`` gives them), not copies: it describes the task
        as it is now, and ``copy.deepcopy`` keeps it across training."""
        self._guard()
        return {
            "epoch": self.epoch,
            "env_steps": self.env_steps,
            "history": [dict(row) for row in self.history],
            "rng": {"torch": self.gen.get_state(),
                    "numpy": json.dumps(self.np_rng.bit_generator.state)},
            "loader": self.loader.state_dict(),
            "modules": to_cpu({k: m.state_dict() for k, m in self.modules.items()}),
            "optimizers": to_cpu({k: o.state_dict() for k, o in self.optimizers.items()}),
            "extra": to_cpu(self.extra_state()),
            # snapshot mode: the running episodes' last observations, where the next epoch
            # starts (with the envs' own state in "loader")
            **({"obs": _running_obs(self.obs)} if self.loader.env_state == "snapshot" else {}),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a ``state_dict``; call ``init`` with the same hyperparameters first.

        A state without one of the components this task needs (a network, an optimizer, the
        RNGs, the buffer) raises ``ValueError`` naming it. Tensors go onto the task's device
        (whichever device wrote them)."""
        self._guard()
        if not self.hp:
            raise RuntimeError("call init() with the checkpoint's hyperparameters first")
        _require(state, ("epoch", "env_steps", "history", "rng", "loader", "modules",
                         "optimizers", "extra"), "state")
        _require(state["rng"], ("torch", "numpy"), "state.rng")
        _require(state["modules"], self.modules, "state.modules")
        _require(state["optimizers"], self.optimizers, "state.optimizers")
        running = self.loader.env_state == "snapshot"
        if running and "obs" not in state:
            raise ValueError("the checkpoint's state holds no running episodes (it was written "
                             "with env_state='reset'); continue it with env_state='reset'")
        self.obs = _load_running_obs(state["obs"]) if running else None
        self.epoch, self.env_steps = int(state["epoch"]), int(state["env_steps"])
        self.history = [dict(row) for row in state["history"]]
        self.gen.set_state(state["rng"]["torch"])
        self.np_rng.bit_generator.state = json.loads(state["rng"]["numpy"])
        self.loader.load_state_dict(state["loader"])
        for key, module in self.modules.items():
            module.load_state_dict(state["modules"][key])
        for key, opt in self.optimizers.items():
            opt.load_state_dict(state["optimizers"][key])
        try:
            self.load_extra_state(state["extra"])
        except KeyError as err:
            raise ValueError(f"the checkpoint's state has no extra.{err.args[0]} that "
                             f"{self.name} needs: it was not written by this task") from None

    def adopt_state_dict(self, state: dict[str, Any],
                         previous: dict[str, Any]) -> dict[str, list[Any]]:
        """Continue a ``state_dict`` trained with the hyperparameters ``previous`` under this
        task's own (``init``'s): what PBT and PB2 do when a child takes its parent's networks.

        Networks, buffers, env statistics, RNGs and counters are the checkpoint's; the
        optimizers keep their moments but take this task's settings (lr, betas, momentum,
        weight decay). Optimizer moments that the new settings cannot use (another family,
        momentum switched on or off) start fresh. The change goes into the history: the next
        epoch's row holds ``hparams_changed`` = ``{name: [old, new]}``, which is returned.
        Hyperparameters that reshape the networks or buffers cannot change: ``ValueError``.
        """
        self._guard()
        if not self.hp:
            raise RuntimeError("call init() with the new hyperparameters first")
        changes = self.check_adoptable(previous)
        settings = {k: {n: v for n, v in o.param_groups[0].items() if n != "params"}
                    for k, o in self.optimizers.items()}
        fresh = {k: o.state_dict() for k, o in self.optimizers.items()}
        try:
            self.load_state_dict({**state, "optimizers": fresh})
        except (RuntimeError, ValueError, KeyError, IndexError) as err:
            lines = [line.strip() for line in str(err).splitlines() if line.strip()] or [""]
            detail = next((line for line in lines if "mismatch" in line), lines[0])[:200]
            raise ValueError(f"cannot continue this checkpoint with {sorted(changes)} changed "
                             f"({type(err).__name__}: {detail}); "
                             f"only hyperparameters that keep the networks' and buffers' "
                             f"shapes can change") from None
        for key, opt in self.optimizers.items():
            try:
                opt.load_state_dict(state["optimizers"][key])
            except (ValueError, KeyError):
                opt.load_state_dict(fresh[key])  # moments of another optimizer: start over
            opt.param_groups[0].update(settings[key])
        self._changes = changes or None
        return changes

    def check_adoptable(self, previous: dict[str, Any]) -> dict[str, list[Any]]:
        """The changes from the hyperparameters ``previous`` to this task's, ``{name: [old,
        new]}``; a one-line ``ValueError`` when one of them fixes a shape (``HP.shape``:
        ``hidden``, ``layers``, ``n_steps``, ``buffer_size``...), before any state is touched."""
        ours, specs = self.hparams(), self.hparam_specs()
        changes = {k: [previous.get(k), ours.get(k)] for k in sorted(ours.keys() | previous.keys())
                   if previous.get(k) != ours.get(k)}
        shaped = [k for k in changes if k in specs and specs[k].shape]
        if shaped:
            what = ", ".join(f"{k} {old!r} -> {new!r}" for k, (old, new) in changes.items()
                             if k in shaped)
            raise ValueError(f"cannot continue this checkpoint with {shaped} changed ({what}: "
                             f"they fix the shapes of the networks, buffers or rollouts); only "
                             f"hyperparameters that keep the networks' and buffers' shapes "
                             f"can change")
        return changes

    # -- hooks for algorithms -----------------------------------------------------------------
    def check_env(self) -> None:
        """Raise ``SpaceMismatch`` if the env's spaces do not fit the algorithm."""
        for kind, space, allowed in (("action", self.action_space, self.ACTION_SPACES),
                                     ("observation", self.observation_space,
                                      self.OBSERVATION_SPACES)):
            if not isinstance(space, allowed):
                names = "/".join(t.__name__ for t in allowed)
                raise SpaceMismatch(f"{self.name} needs {names} {kind}s but {self.env_id} has "
                                    f"{space}", self.action_space, self.observation_space,
                                    type(self.loader))
        space = self.action_space
        if not _bounded(space):
            raise SpaceMismatch(
                f"{self.name} needs finite action bounds (it rescales its actions to them) but "
                f"{self.env_id} has {space}: give the env's action space finite low and high",
                self.action_space, self.observation_space, type(self.loader))
        if not self._obs_rank_fits(self.observation_space):
            what = ("learns from vectors, not images" if is_image_space(self.observation_space)
                    else f"takes observations of at most {self.OBS_NDIM} dimension(s) or "
                    f"uint8 images")
            raise SpaceMismatch(f"{self.name} {what}, but {self.env_id} has "
                                f"{self.observation_space}", self.action_space,
                                self.observation_space, type(self.loader))

    @classmethod
    def _obs_rank_fits(cls, space: spaces.Space) -> bool:
        if is_image_space(space):
            return cls.IMAGES
        return not isinstance(space, spaces.Box) or len(space.shape) <= cls.OBS_NDIM

    @classmethod
    def fits(cls, action_space: spaces.Space, observation_space: spaces.Space) -> bool:
        """Whether the algorithm handles these spaces."""
        return (isinstance(action_space, cls.ACTION_SPACES) and _bounded(action_space)
                and isinstance(observation_space, cls.OBSERVATION_SPACES)
                and cls._obs_rank_fits(observation_space))

    def setup(self) -> None:
        """Build networks into ``self.modules`` and optimizers into ``self.optimizers``."""
        raise NotImplementedError

    def train_epoch(self) -> dict[str, float]:
        """Collect ``steps_per_epoch`` env steps from ``self.obs``, update, return metrics."""
        raise NotImplementedError

    def act(self, obs: np.ndarray) -> np.ndarray:
        """Deterministic actions for a batch of (normalised) observations."""
        raise NotImplementedError

    def policy_actions(self, obs: torch.Tensor) -> torch.Tensor:
        """``act`` in torch ops: env actions of a batch of normalised flat observations, for
        ``policy_module`` (export). Each algorithm family defines it."""
        raise NotImplementedError(f"{self.name} cannot export its policy yet")

    def policy_module(self) -> nn.Module:
        """The deterministic policy alone, as a module from a batch of raw observations
        to env actions: observation normalisation, network, action rescaling or argmax
        (observations shaped as the env gives them: flat, or agents x features). It shares
        the task's networks, so it is on ``task.device``; ``rltasks export`` loads the run on
        the CPU, so an exported policy is a CPU module."""
        return PolicyModule(self)

    def extra_state(self) -> dict[str, Any]:
        """Algorithm state beyond modules and optimizers (buffers, noise processes)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore ``extra_state``."""

    # -- helpers --------------------------------------------------------------------------------
    def tensor(self, array: Any, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``array`` (the env's or a buffer's numpy) as a tensor on the task's device, of its
        own dtype unless ``dtype`` is given; on the CPU it shares the array's memory, as
        ``torch.from_numpy`` does. Results go back to the env with ``.cpu().numpy()``."""
        return torch.as_tensor(array, dtype=dtype, device=self.device)

    def optimizer_step(self, name: str, loss: torch.Tensor,
                       clip: Iterable[torch.Tensor] | None = None,
                       max_grad_norm: float | None = None) -> None:
        """One gradient step of optimizer ``name`` on ``loss``: zero its grads, backpropagate,
        clip the global norm of the gradients of ``clip`` (when given) to ``max_grad_norm``
        (default: the ``max_grad_norm`` hyperparameter), step. Every algorithm's update goes
        through here, so they all take their steps the same way."""
        self.optimizers[name].zero_grad(set_to_none=True)
        loss.backward()
        self.clip_and_step(name, clip, max_grad_norm)

    def clip_and_step(self, name: str, clip: Iterable[torch.Tensor] | None = None,
                      max_grad_norm: float | None = None) -> None:
        """The end of ``optimizer_step``, once the gradients are in: clip, step. Clipped
        gradients of infinite or NaN norm raise ``NonFiniteError`` before the step, so the
        networks stay finite (a NaN policy would fail mid-epoch in its sampling instead)."""
        if clip is not None:
            self.check_grad_norm(nn.utils.clip_grad_norm_(
                clip, self.hp["max_grad_norm"] if max_grad_norm is None else max_grad_norm))
        self.step_optimizer(name)

    def check_grad_norm(self, norm: torch.Tensor) -> None:
        """Raise ``NonFiniteError`` if the gradient norm (before clipping) is not finite."""
        if not bool(torch.isfinite(norm)):
            _check_finite({"gradient norm": float(norm)}, self.epoch + 1, self.hp)

    def step_optimizer(self, name: str) -> None:
        """Step optimizer ``name`` (its gradients in, clipped)."""
        failpoint("update")
        self.optimizers[name].step()

    def _guard(self) -> None:
        if self._poisoned is not None:
            raise BadResume(f"task {self.name!r} is unusable after a failed fit "
                            f"({self._poisoned}); build a new task and load the last checkpoint")

    def close(self) -> None:
        """Close the envs."""
        self.loader.close()


class PolicyModule(nn.Module):
    """A task's deterministic policy as one module (``Task.policy_module``): a frozen copy of
    the observation statistics, then ``task.policy_actions``."""

    def __init__(self, task: Task) -> None:
        super().__init__()
        self.nets = nn.ModuleDict(task.modules)
        self.policy_actions = task.policy_actions
        rms = getattr(task.loader, "obs_rms", None)
        self.normalize = rms is not None
        mean = task.tensor(rms.mean if rms else 0.0, dtype=torch.float32)
        std = task.tensor(np.sqrt(rms.var + 1e-8) if rms else 1.0, dtype=torch.float32)
        self.register_buffer("obs_mean", mean.reshape(1, -1))
        self.register_buffer("obs_std", std.reshape(1, -1))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        obs = obs.float()
        if self.normalize:
            obs = ((obs - self.obs_mean) / self.obs_std).clamp(-10.0, 10.0)
        return self.policy_actions(obs)


def _bounded(space: spaces.Space) -> bool:
    """Not a Box, or a Box whose bounds are all finite (tasks rescale actions to them)."""
    return not isinstance(space, spaces.Box) or bool(
        np.isfinite(space.low).all() and np.isfinite(space.high).all())


def _require(state: Any, keys: Iterable[str], where: str) -> None:
    """One-line ``ValueError`` naming the first component ``state`` lacks."""
    if not isinstance(state, dict):
        raise ValueError(f"the checkpoint's {where} is a {type(state).__name__}, not a mapping")
    missing = [k for k in keys if k not in state]
    if missing:
        raise ValueError(f"the checkpoint's {where} has no {', '.join(missing)}: it is damaged "
                         f"or was written by another task")


def _running_obs(obs: np.ndarray | None) -> dict[str, Any] | None:
    """``Task.obs`` for the state: a copy, and its memory order. A loader hands out F-ordered
    arrays (numpy-vectorized CartPole's transposed state), and a network's output on them
    differs in the last bits from the output on C-ordered ones: the resumed run must see
    the very layout the straight one does."""
    if obs is None:
        return None
    order = "F" if obs.flags.f_contiguous and not obs.flags.c_contiguous else "C"
    return {"array": np.array(obs, order=order), "order": order}


def _load_running_obs(state: dict[str, Any] | None) -> np.ndarray | None:
    if state is None:
        return None
    return np.array(state["array"], order="F" if state["order"] == "F" else "C")


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (``MemAvailable`` of /proc/meminfo, else
    the physical memory), or None where neither can be read."""
    try:
        for line in read_special("/proc/meminfo").decode("ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):  # FileRefused and UnicodeDecodeError too
        pass
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


#: the hyperparameters that size what a task allocates, named when it asks for too much
SIZES = ("hidden", "layers", "buffer_size", "n_steps")


def footprint(task: Task, hp: dict[str, Any]) -> int:
    """Estimated bytes of what ``task`` would build under ``hp``: ``NETWORKS`` networks of
    ``layers`` x ``hidden``, each with its gradients and two optimizer moments, the replay
    buffer (``replay_bytes``) and the rollout, all float32 (uint8 for images)."""
    obs = spaces.flatdim(task.observation_space)
    act = spaces.flatdim(task.action_space)
    width, depth = int(hp.get("hidden", 0)), int(hp.get("layers", 0))
    per_net = (obs + act + 1) * width + max(depth - 1, 0) * (width + 1) * width + width * act
    networks = task.NETWORKS * per_net * 4 * 4
    rollout = int(hp.get("n_steps", 0)) * task.num_envs * (2 * obs + act + 8) * 4
    if is_image_space(task.observation_space):
        rollout = int(hp.get("n_steps", 0)) * task.num_envs * (obs + 32)
    return networks + replay_bytes(task, hp) + rollout


def replay_bytes(task: Task, hp: dict[str, Any]) -> int:
    """Estimated bytes of a full replay buffer under ``hp`` (what its checkpoint holds too):
    observations twice, actions, rewards, float32; for images uint8, each distinct frame
    once (about one a transition) and the indices."""
    obs = spaces.flatdim(task.observation_space)
    transition = 2 * obs + spaces.flatdim(task.action_space) + 4
    if is_image_space(task.observation_space):
        c, h, w, last = image_layout(task.observation_space.shape)
        return int(hp.get("buffer_size", 0)) * (obs // (1 if last else c) + 128)
    return int(hp.get("buffer_size", 0)) * transition * 4


def check_footprint(task: Task, hp: dict[str, Any]) -> None:
    """A one-line ``ValueError`` when ``footprint`` exceeds the memory available: a
    checkpoint that declares ``hidden=100000`` is refused before anything is allocated."""
    need, free = footprint(task, hp), available_memory()
    if free is not None and need > free:
        sizes = ", ".join(f"{k}={hp[k]}" for k in SIZES if k in hp)
        raise ValueError(f"{task.name} with {sizes} needs about {need / 2**30:.1f} GiB "
                         f"(networks, optimizer state, buffers) but {free / 2**30:.1f} GiB of "
                         f"memory is available: lower {', '.join(k for k in SIZES if k in hp)}")


def _check_finite(metrics: dict[str, Any], epoch: int, hp: dict[str, Any]) -> None:
    levers = "lr or max_grad_norm" if "max_grad_norm" in hp else "lr"  # DDPG/TD3/SAC: no clip
    for key, value in metrics.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise NonFiniteError(
                f"{key} became {value} in epoch {epoch}: training diverged; lower {levers}, "
                f"or enable norm_obs/norm_reward (the last good checkpoint is kept)")
