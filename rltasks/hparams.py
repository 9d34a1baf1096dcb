"""Hyperparameter declarations: a default, an Orion prior, and what counts as valid.

Every block of a task (its own update rule, the optimizer, the lr schedule) declares its
hyperparameters as :class:`HP` objects. ``Task.get_space()`` is the union of the priors of the
declared hyperparameters that were not fixed at ``make_task``; ``Task.init()`` validates the
values it gets with :meth:`HP.coerce`, so a bad value fails before any network is built.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class HP:
    """One hyperparameter.

    ``prior`` is the Orion prior string (``'loguniform(1e-5, 1e-2)'``). ``low``/``high`` bound
    the *valid* values, which may be wider than the prior (a user may fix ``lr=0.05`` even if
    the hunt never proposes it); ``low_open``/``high_open`` make a bound exclusive. Every
    size-like integer (a width, a capacity, a count of steps) has a finite ``high``: a
    checkpoint's own hyperparameters rebuild its task, so a declared size must never make
    rltasks allocate without limit.

    ``shape`` marks a hyperparameter that fixes the shape of the networks, buffers or
    rollouts (``hidden``, ``buffer_size``, ``n_steps``...): a run continued under other
    hyperparameters (PBT's child, ``Task.adopt_state_dict``) cannot change it.
    """

    default: Any
    prior: str
    kind: type = float
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    help: str = ""
    shape: bool = False
    #: values inside [low, high] that are still invalid (``gradient_steps=0``)
    excluded: tuple[Any, ...] = ()

    def coerce(self, name: str, value: Any) -> Any:
        """Return ``value`` converted to this kind, or raise ``ValueError`` naming the problem."""
        try:
            value = _convert(self.kind, value)
        except (TypeError, ValueError):
            raise ValueError(
                f"hyperparameter {name}={value!r} is not a valid {self.kind.__name__}"
            ) from None
        if self.choices is not None and value not in self.choices:
            raise ValueError(
                f"hyperparameter {name}={value!r} is not one of {list(self.choices)}"
            )
        if self.kind in (int, float):
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"hyperparameter {name}={value!r} must be finite")
            below = self.low is not None and (
                value < self.low or (self.low_open and value == self.low)
            )
            above = self.high is not None and (
                value > self.high or (self.high_open and value == self.high)
            )
            if below or above or value in self.excluded:
                raise ValueError(f"hyperparameter {name}={value!r} is out of range: {self.valid()}")
        return value

    def valid(self) -> str:
        """Human description of the valid values, for error messages and docs."""
        if self.choices is not None:
            return f"one of {list(self.choices)}"
        lo = "(" if self.low_open else "["
        hi = ")" if self.high_open else "]"
        low = "-inf" if self.low is None else repr(self.low)
        high = "inf" if self.high is None else repr(self.high)
        but = f" except {', '.join(map(repr, self.excluded))}" if self.excluded else ""
        return f"{self.kind.__name__} in {lo}{low}, {high}{hi}{but}"


def _convert(kind: type, value: Any) -> Any:
    if kind is bool:
        if isinstance(value, str):
            low = value.strip().lower()
            if low in ("true", "1", "yes", "on"):
                return True
            if low in ("false", "0", "no", "off"):
                return False
            raise ValueError(value)
        if isinstance(value, (bool, int)) and value in (0, 1):
            return bool(value)
        raise ValueError(value)
    if kind is int:
        # Orion hands integers and fidelities over as floats ("3.666"): parse, then round.
        if isinstance(value, bool):
            raise TypeError(value)
        number = float(value)
        if not math.isfinite(number):
            raise ValueError(value)
        return int(round(number))
    if kind is float:
        if isinstance(value, bool):
            raise TypeError(value)
        return float(value)
    if kind is str:
        if not isinstance(value, str):
            raise TypeError(value)
        return value
    return kind(value)


def choices(*values: Any) -> str:
    """Orion prior string for a categorical."""
    return f"choices({list(values)!r})"


#: rl-zoo3's samplers' discount and GAE choices (``hyperparams_opt.py``), for curated spaces
ZOO_GAMMA = choices(0.9, 0.95, 0.98, 0.99, 0.995, 0.999, 0.9999)
ZOO_GAE_LAMBDA = choices(0.8, 0.9, 0.92, 0.95, 0.98, 0.99, 1.0)
#: rl-zoo3's "tiny" / "small" / "medium" networks: 64 or 256 units, one or two layers
ZOO_NET = {"hidden": choices(64, 256), "layers": choices(1, 2)}


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Namespaced names flat: ``{"sgd": {"momentum": 0.9}}`` (a nested config) and
    ``{"/sgd/momentum": 0.9}`` (Orion's trial params) -> ``{"sgd.momentum": 0.9}``; dashes
    become underscores.

    Namespaced hyperparameters are nested in YAML (``sgd: {momentum: ...}``): Orion 0.2.7
    reads a dotted key as nested too, but writes the trial's value back only under nesting
    (a dotted key keeps its ``orion~`` prior in the trial's config).
    """
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = prefix + str(key).lstrip("/").replace("/", ".").replace("-", "_")
        if isinstance(value, Mapping):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat


def namespaced(values: Mapping[str, Any], chosen: str | None,
               names: Iterable[str]) -> tuple[dict[str, Any], list[str]]:
    """Resolve ``<name>.<key>`` entries against the ``chosen`` name of a categorical.

    Orion 0.2.7 has no conditional dimensions, so a hyperparameter that only exists for one
    choice of a categorical (``sgd.momentum`` for ``optimizer=sgd``, ``ppo.clip_range`` for
    ``agent=ppo``) is its own dimension, named after the choice. For a trial, the entries of
    the chosen name lose their prefix (``sgd.momentum`` -> ``momentum``) and win over a plain
    entry of the same key; those of the other names are dropped. Keys whose prefix is not in
    ``names`` pass through unchanged. Returns ``(values, dropped keys)``.
    """
    names = set(names)
    plain: dict[str, Any] = {}
    chosen_values: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in values.items():
        prefix, dot, rest = key.partition(".")
        if not dot or prefix not in names:
            plain[key] = value
        elif prefix == chosen:
            chosen_values[rest] = value
        else:
            dropped.append(key)
    return {**plain, **chosen_values}, sorted(dropped)

#: the CNN torso of a task that learns from images (``rltasks.nets.BODIES``); the curated
#: spaces hunt it on image envs only
BODY = HP("nature", choices("nature", "impala"), kind=str, choices=("nature", "impala"),
          shape=True, help="CNN torso for image observations (Nature DQN's or IMPALA's)")
#: the dtype the CNN torso computes in (``rltasks.nets.PRECISIONS``): bfloat16 is mixed
#: precision (autocast; float32 parameters, heads and losses), ~1.9x faster updates on a CPU
#: with AVX512-BF16 (``bench/atari.py``); image envs only, not hunted by the curated spaces
PRECISION = HP("float32", choices("float32", "bfloat16"), kind=str,
               choices=("float32", "bfloat16"),
               help="dtype of the CNN torso's arithmetic on images: float32, or bfloat16 "
                    "(mixed precision, faster on CPUs with AVX512-BF16 and on GPUs)")
