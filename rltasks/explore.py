"""Exploration: policies for value-based agents (``POLICIES``), action noise (``NOISES``).

A policy turns a batch of Q-values into actions. Each one declares its own hyperparameters,
so DQN's ``exploration`` categorical and the policies' parameters form one Orion space and a
hunt can compare exploration strategies. Every schedule is a function of the env-step
counter the task state holds; randomness comes from the task's own ``torch.Generator``; the
one stateful policy (Boltzmann-Gumbel's action counts) checkpoints its state.

That generator is on the CPU whatever the task's device: every draw is made on the CPU and
moved to the device of the Q-values (a policy's actions are on theirs) or, for a noise, to
its ``device``, so a run draws the same random numbers on every device (``rltasks.device``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch

from rltasks.hparams import HP


class Policy:
    """Base: ``select(q, steps, gen)`` -> actions; greedy by default."""

    name: ClassVar[str] = ""
    HPARAMS: ClassVar[dict[str, HP]] = {}

    def __init__(self, hp: dict[str, Any], n_actions: int) -> None:
        self.hp, self.n_actions = hp, n_actions

    def select(self, q: torch.Tensor, steps: int, gen: torch.Generator) -> torch.Tensor:
        return q.argmax(-1)

    def act(self, q_of: Callable[[], torch.Tensor], shape: tuple[int, int], steps: int,
            gen: torch.Generator) -> torch.Tensor:
        """``select`` on the Q-values ``q_of()`` (``shape``: envs x actions) computes, which a
        policy may skip when it needs none (epsilon-greedy when every env explores: a
        network's forward pass saved, as SB3's DQN saves it). Same draws, same actions."""
        return self.select(q_of(), steps, gen)

    def scale(self, steps: int) -> float:
        """The exploration level to log (epsilon, temperature...)."""
        return 0.0

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def _with_prob(eps: float, like: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """True with probability ``eps`` for each action of the Q-values ``like``."""
    return torch.rand(like.shape[:-1], generator=gen).to(like.device) < eps


def _uniform(like: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Uniform draws in [1e-20, 1), shaped and placed as ``like``, for Gumbel noise."""
    return torch.rand(like.shape, generator=gen).clamp_(1e-20, 1.0).to(like.device)


def _sample(logits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Gumbel-max sampling from softmax(logits) with the task's generator."""
    u = _uniform(logits, gen)
    return (logits - torch.log(-torch.log(u))).argmax(-1)


class Greedy(Policy):
    """Always the action of highest Q."""

    name = "greedy"


class EpsilonGreedy(Policy):
    """A uniformly random action with probability ``epsilon``, else greedy."""

    name = "epsilon_greedy"
    HPARAMS = {"epsilon": HP(0.05, "uniform(0.0, 0.3)", low=0.0, high=1.0,
                             help="probability of a random action")}

    def scale(self, steps: int) -> float:
        return self.hp["epsilon"]

    def select(self, q: torch.Tensor, steps: int, gen: torch.Generator) -> torch.Tensor:
        return self.act(lambda: q, q.shape, steps, gen).to(q.device)

    def act(self, q_of: Callable[[], torch.Tensor], shape: tuple[int, int], steps: int,
            gen: torch.Generator) -> torch.Tensor:
        explore, random = self.draw(shape, steps, gen)
        return random if bool(explore.all()) else self.pick(explore, random, q_of())

    def draw(self, shape: tuple[int, int], steps: int, gen: torch.Generator
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(which envs explore, their random actions), drawn from ``gen`` on the CPU."""
        explore = torch.rand(shape[:-1], generator=gen) < self.scale(steps)
        return explore, torch.randint(shape[-1], shape[:-1], generator=gen)

    @staticmethod
    def pick(explore: torch.Tensor, random: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        """The random action where an env explores, the greedy one elsewhere (any leading
        dims: a population picks every member's at once)."""
        return torch.where(explore.to(q.device), random.to(q.device), q.argmax(-1))


class AdaptiveEpsilonGreedy(EpsilonGreedy):
    """Epsilon decays linearly from ``eps_initial`` to ``eps_min`` over ``eps_decay`` steps."""

    name = "adaptive_epsilon"
    HPARAMS = {
        "eps_initial": HP(1.0, "uniform(0.5, 1.0)", low=0.0, high=1.0, help="initial epsilon"),
        "eps_min": HP(0.04, "uniform(0.0, 0.1)", low=0.0, high=1.0, help="final epsilon"),
        "eps_decay": HP(8000, "loguniform(1000, 100000, discrete=True)", kind=int, low=1,
                        high=10**9,
                        help="env steps over which epsilon decays linearly"),
    }

    def scale(self, steps: int) -> float:
        hp = self.hp
        frac = min(1.0, steps / hp["eps_decay"])
        return hp["eps_initial"] + frac * (hp["eps_min"] - hp["eps_initial"])


class Softmax(Policy):
    """Sample from softmax(Q): the policy's probabilities at temperature 1."""

    name = "softmax"

    def select(self, q: torch.Tensor, steps: int, gen: torch.Generator) -> torch.Tensor:
        return _sample(q, gen)


class Boltzmann(Policy):
    """Sample from softmax(clip(Q / tau, -clip, clip))."""

    name = "boltzmann"
    HPARAMS = {
        "boltzmann_tau": HP(1.0, "loguniform(0.01, 10.0)", low=0.0, low_open=True,
                            help="Boltzmann temperature"),
        "boltzmann_clip": HP(500.0, "uniform(10.0, 500.0)", low=0.0, low_open=True,
                             help="clip of Q / tau (numerical safety)"),
    }

    def scale(self, steps: int) -> float:
        return self.hp["boltzmann_tau"]

    def logits(self, q: torch.Tensor) -> torch.Tensor:
        clip = self.hp["boltzmann_clip"]
        return (q / self.hp["boltzmann_tau"]).clamp(-clip, clip)

    def select(self, q: torch.Tensor, steps: int, gen: torch.Generator) -> torch.Tensor:
        return _sample(self.logits(q), gen)


class MaxBoltzmann(Boltzmann):
    """With probability ``epsilon`` a Boltzmann sample, else greedy (Wiering 1999)."""

    name = "max_boltzmann"
    HPARAMS = {**EpsilonGreedy.HPARAMS, **Boltzmann.HPARAMS}

    def select(self, q: torch.Tensor, steps: int, gen: torch.Generator) -> torch.Tensor:
        explore = _with_prob(self.hp["epsilon"], q, gen)
        return torch.where(explore, _sample(self.logits(q), gen), q.argmax(-1))


class BoltzmannGumbel(Policy):
    """argmax(Q + beta * Z), Z ~ Gumbel, beta_a = C / sqrt(N_a) (Cesa-Bianchi et al. 2017).

    ``N_a`` counts how often action ``a`` was taken; the counts are part of the state and
    stay on the CPU whatever the device of the Q-values (``beta`` is moved to theirs).
    """

    name = "boltzmann_gumbel"
    HPARAMS = {"bg_c": HP(1.0, "loguniform(0.01, 10.0)", low=0.0, low_open=True,
                          help="Boltzmann-Gumbel exploration constant C")}

    def __init__(self, hp: dict[str, Any], n_actions: int) -> None:
        super().__init__(hp, n_actions)
        self.counts = torch.zeros(n_actions, dtype=torch.int64)

    def scale(self, steps: int) -> float:
        return self.hp["bg_c"] / math.sqrt(max(1, int(self.counts.sum())))

    def select(self, q: torch.Tensor, steps: int, gen: torch.Generator) -> torch.Tensor:
        # float64 on the CPU (MPS has none), as before; then onto the Q-values' device
        beta = (self.hp["bg_c"] / self.counts.clamp(min=1).double().sqrt().to(q.dtype)).to(
            q.device)
        u = _uniform(q, gen)
        actions = (q - beta * torch.log(-torch.log(u))).argmax(-1)
        self.counts += torch.bincount(actions.flatten().cpu(), minlength=self.n_actions)
        return actions

    def state_dict(self) -> dict[str, Any]:
        return {"counts": self.counts.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.counts = state["counts"].clone()


class GumbelSoftmax(Policy):
    """The Gumbel-max trick on Q / temperature: a sample of softmax(Q / temperature)."""

    name = "gumbel_softmax"
    HPARAMS = {"gumbel_temperature": HP(1.0, "loguniform(0.01, 10.0)", low=0.0, low_open=True,
                                        help="Gumbel-softmax temperature")}

    def scale(self, steps: int) -> float:
        return self.hp["gumbel_temperature"]

    def select(self, q: torch.Tensor, steps: int, gen: torch.Generator) -> torch.Tensor:
        return _sample(q / self.hp["gumbel_temperature"], gen)


#: name -> policy class
POLICIES: dict[str, type[Policy]] = {cls.name: cls for cls in (
    Greedy, EpsilonGreedy, AdaptiveEpsilonGreedy, Softmax, Boltzmann, MaxBoltzmann,
    BoltzmannGumbel, GumbelSoftmax)}

#: every policy's hyperparameters, merged (shared names such as ``epsilon`` appear once)
POLICY_HPARAMS: dict[str, HP] = {k: v for cls in POLICIES.values() for k, v in cls.HPARAMS.items()}


def make_policy(hp: dict[str, Any], n_actions: int) -> Policy:
    """Build the policy named by ``hp['exploration']``."""
    name = hp["exploration"]
    if name not in POLICIES:
        raise ValueError(f"unknown exploration {name!r}: choose one of {sorted(POLICIES)}")
    return POLICIES[name](hp, n_actions)


# -- action noise for deterministic continuous policies (registry NOISES) --------------------


class Noise:
    """Additive action noise for ``num_envs`` envs, in the policy's [-1, 1] action units.

    ``sigma`` anneals linearly from ``noise_sigma`` to ``noise_sigma_min`` over
    ``noise_annealing`` env steps (the step counter comes from the task state). Samples and
    the process state are on ``device``.
    """

    name: ClassVar[str] = ""
    HPARAMS: ClassVar[dict[str, HP]] = {}

    def __init__(self, hp: dict[str, Any], num_envs: int, act_dim: int,
                 device: torch.device | str = "cpu") -> None:
        self.hp, self.shape, self.device = hp, (num_envs, act_dim), torch.device(device)

    def sigma(self, steps: int) -> float:
        hp = self.hp
        frac = min(1.0, steps / hp["noise_annealing"])
        return hp["noise_sigma"] + frac * (hp["noise_sigma_min"] - hp["noise_sigma"])

    def sample(self, steps: int, gen: torch.Generator) -> torch.Tensor:
        return torch.zeros(self.shape, device=self.device)

    def normal(self, gen: torch.Generator) -> torch.Tensor:
        """Standard normal draws of ``shape`` from ``gen`` (a CPU one), on ``device``."""
        return torch.randn(self.shape, generator=gen).to(self.device)

    def reset(self, mask: torch.Tensor | None = None) -> None:
        """Forget the process state of the envs in ``mask`` (all when None): new episodes."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


_SIGMA_HPARAMS = {
    "noise_mu": HP(0.0, "uniform(-0.1, 0.1)", low=-1.0, high=1.0, help="noise mean"),
    "noise_sigma": HP(0.1, "uniform(0.05, 0.5)", low=0.0, help="initial noise scale"),
    "noise_sigma_min": HP(0.1, "uniform(0.0, 0.2)", low=0.0, help="final noise scale"),
    "noise_annealing": HP(100_000, "loguniform(1000, 1000000, discrete=True)", kind=int, low=1,
                          high=10**9,
                          help="env steps over which the scale anneals"),
}


class NoNoise(Noise):
    """No exploration noise (SAC explores through its own stochastic policy)."""

    name = "none"


class GaussianNoise(Noise):
    """White Gaussian noise ``N(mu, sigma**2)``, independent across steps and envs."""

    name = "gaussian"
    HPARAMS = _SIGMA_HPARAMS

    def sample(self, steps: int, gen: torch.Generator) -> torch.Tensor:
        return self.hp["noise_mu"] + self.sigma(steps) * self.normal(gen)


class OrnsteinUhlenbeckNoise(Noise):
    """Temporally correlated noise ``dx = theta (mu - x) dt + sigma sqrt(dt) dW`` (DDPG paper);
    its current value per env is part of the state and restarts at mu for a new episode."""

    name = "ornstein_uhlenbeck"
    HPARAMS = {**_SIGMA_HPARAMS,
               "ou_theta": HP(0.15, "uniform(0.05, 1.0)", low=0.0, help="mean reversion"),
               "ou_dt": HP(1e-2, "loguniform(1e-3, 1.0)", low=0.0, low_open=True,
                           help="time step")}

    def __init__(self, hp: dict[str, Any], num_envs: int, act_dim: int,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(hp, num_envs, act_dim, device)
        self.x = torch.full(self.shape, float(hp["noise_mu"]), device=self.device)

    def sample(self, steps: int, gen: torch.Generator) -> torch.Tensor:
        hp, dt = self.hp, self.hp["ou_dt"]
        dw = math.sqrt(dt) * self.normal(gen)
        self.x = self.x + hp["ou_theta"] * (hp["noise_mu"] - self.x) * dt + self.sigma(steps) * dw
        return self.x

    def reset(self, mask: torch.Tensor | None = None) -> None:
        if mask is None:
            self.x.fill_(self.hp["noise_mu"])
        else:
            self.x[mask.to(self.device)] = self.hp["noise_mu"]

    def state_dict(self) -> dict[str, Any]:
        return {"x": self.x.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.x = state["x"].to(self.device, copy=True)


#: name -> noise process class
NOISES: dict[str, type[Noise]] = {cls.name: cls for cls in (
    NoNoise, GaussianNoise, OrnsteinUhlenbeckNoise)}

#: every noise's hyperparameters, merged
NOISE_HPARAMS: dict[str, HP] = {k: v for cls in NOISES.values() for k, v in cls.HPARAMS.items()}


def make_noise(hp: dict[str, Any], num_envs: int, act_dim: int,
               device: torch.device | str = "cpu") -> Noise:
    """Build the noise process named by ``hp['noise']``, on ``device``."""
    name = hp["noise"]
    if name not in NOISES:
        raise ValueError(f"unknown noise {name!r}: choose one of {sorted(NOISES)}")
    return NOISES[name](hp, num_envs, act_dim, device)
