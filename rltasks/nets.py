"""Network bodies and heads shared by every task."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

ACTIVATIONS: dict[str, type[nn.Module]] = {"tanh": nn.Tanh, "relu": nn.ReLU, "elu": nn.ELU}


def layer_init(layer: nn.Linear, gain: float = math.sqrt(2), bias: float = 0.0) -> nn.Linear:
    """Orthogonal weights and constant bias, as in the PPO implementation details."""
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def initializer(orthogonal: bool) -> Callable[..., nn.Linear]:
    """``layer_init`` (orthogonal), or one that keeps PyTorch's default init (SB3's for its
    off-policy networks) and ignores the gain."""
    return layer_init if orthogonal else (lambda layer, gain=1.0: layer)


def mlp(n_in: int, hidden: Sequence[int], n_out: int, activation: str = "tanh",
        out_gain: float = 1.0, orthogonal: bool = True) -> nn.Sequential:
    """A multilayer perceptron ``n_in -> hidden... -> n_out`` with orthogonal init (or, with
    ``orthogonal=False``, PyTorch's default init, which SB3's SAC and TD3 keep)."""
    act = ACTIVATIONS[activation]
    init = initializer(orthogonal)
    layers: list[nn.Module] = []
    last = n_in
    for width in hidden:
        layers += [init(nn.Linear(last, width)), act()]
        last = width
    layers.append(init(nn.Linear(last, n_out), gain=out_gain))
    return nn.Sequential(*layers)


class CategoricalHead:
    """Log-probabilities, entropy and sampling of a categorical policy given logits.

    Sampling draws from the task's own ``torch.Generator`` so that the run is reproducible and
    its random state can be checkpointed. That generator is a CPU one on every device
    (``rltasks.device``): the draw is made on the CPU and the actions moved to the logits'.
    """

    @staticmethod
    def sample(logits: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        probs = torch.softmax(logits, dim=-1)
        return torch.multinomial(probs.cpu(), 1, generator=gen).squeeze(-1).to(logits.device)

    @staticmethod
    def mode(logits: torch.Tensor) -> torch.Tensor:
        return logits.argmax(dim=-1)

    @staticmethod
    def log_prob(logits: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits, dim=-1)
        return logp.gather(-1, actions.long().unsqueeze(-1)).squeeze(-1)

    @staticmethod
    def entropy(logits: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(logits, dim=-1)
        return -(logp.exp() * logp).sum(-1)


class GaussianHead:
    """Diagonal Gaussian with a state-independent log standard deviation; the noise is drawn
    from the task's CPU generator and moved to the mean's device, as ``CategoricalHead``."""

    @staticmethod
    def sample(mean: torch.Tensor, log_std: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
        noise = torch.randn(mean.shape, generator=gen, dtype=mean.dtype).to(mean.device)
        return mean + log_std.exp() * noise

    @staticmethod
    def log_prob(mean: torch.Tensor, log_std: torch.Tensor, actions: torch.Tensor
                 ) -> torch.Tensor:
        var = (2 * log_std).exp()
        logp = -((actions - mean) ** 2) / (2 * var) - log_std - 0.5 * math.log(2 * math.pi)
        return logp.sum(-1)

    @staticmethod
    def entropy(log_std: torch.Tensor, batch: int) -> torch.Tensor:
        ent = (0.5 + 0.5 * math.log(2 * math.pi) + log_std).sum(-1)
        return ent.expand(batch)


class QNetwork(nn.Module):
    """Q-values of every discrete action; with ``dueling``, ``V(s) + A(s, a) - mean_a A``
    (Wang et al. 2016) from two heads on a shared body."""

    def __init__(self, n_in: int, hidden: Sequence[int], n_actions: int,
                 activation: str = "relu", dueling: bool = False, orthogonal: bool = True
                 ) -> None:
        super().__init__()
        self.dueling = dueling
        if not dueling:
            self.net = mlp(n_in, hidden, n_actions, activation, orthogonal=orthogonal)
            return
        # no hidden layer (on a CNN torso): both heads read the input
        self.net = (mlp(n_in, hidden[:-1], hidden[-1], activation, orthogonal=orthogonal)
                    if hidden else nn.Identity())
        self.act = ACTIVATIONS[activation]() if hidden else nn.Identity()
        width = hidden[-1] if hidden else n_in
        init = initializer(orthogonal)
        self.value = init(nn.Linear(width, 1), gain=1.0)
        self.advantage = init(nn.Linear(width, n_actions), gain=1.0)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if not self.dueling:
            return self.net(obs)
        h = self.act(self.net(obs))
        return self.combine(self.value(h), self.advantage(h))

    @staticmethod
    def combine(value: torch.Tensor, adv: torch.Tensor) -> torch.Tensor:
        """Dueling Q-values from the value and advantage heads' outputs."""
        return value + adv - adv.mean(-1, keepdim=True)


class SDEActor(nn.Module):
    """The actor of generalized state-dependent exploration (gSDE, Raffin et al. 2022) as
    SB3's SAC builds it: an MLP whose last hidden features ``z`` give the mean (clipped to
    [-2, 2] before the tanh squash) and the exploration noise ``z @ W``, where ``W`` holds one
    ``N(0, exp(log_std))`` weight per (feature, action), drawn anew every few steps, so that
    the noise is a smooth function of the state between draws. The noise and its variance see
    ``z`` detached (SB3's ``learn_features=False``); ``log_std`` learns through both.

    The noise's scale is that of ``z``: the orthogonal init's zero biases shrink it on small
    observations (MountainCar's start states: 2.7x less noise at the same ``log_std`` than
    under PyTorch's default init, SB3's, on which rl-zoo3's ``log_std_init`` was tuned)."""

    CLIP_MEAN = 2.0
    VAR_EPS = 1e-6  # SB3's epsilon under the square root of the variance

    def __init__(self, n_in: int, hidden: Sequence[int], n_act: int, activation: str,
                 log_std_init: float, orthogonal: bool = True) -> None:
        super().__init__()
        net = mlp(n_in, hidden, n_act, activation, orthogonal=orthogonal)
        self.body, self.mean = net[:-1], net[-1]
        self.log_std = nn.Parameter(torch.full((hidden[-1], n_act), float(log_std_init)))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """The mean (before the squash)."""
        return self.features(obs)[0]

    def features(self, obs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, the detached features ``z`` that the noise reads)."""
        z = self.body(obs)
        return self.mean(z).clamp(-self.CLIP_MEAN, self.CLIP_MEAN), z.detach()

    def draw(self, gen: torch.Generator, batch: tuple[int, ...] = ()) -> torch.Tensor:
        """Noise weights ``W`` of shape ``(*batch, features, actions)``, differentiable in
        ``log_std`` (a reparameterised draw from the task's CPU generator)."""
        eps = torch.randn((*batch, *self.log_std.shape), generator=gen)
        return self.log_std.exp() * eps.to(self.log_std.device)

    def sample(self, obs: torch.Tensor, weights: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        """(pre-squash action ``mean + z @ W``, its log-probability under ``N(mean, var)``
        with ``var = z^2 @ exp(log_std)^2``). ``weights`` is one ``W`` for the whole batch,
        or one per row (``(batch, features, actions)``, one per env)."""
        mean, z = self.features(obs)
        if weights.dim() == 3:
            noise = torch.bmm(z.unsqueeze(1), weights).squeeze(1)
        else:
            noise = z @ weights
        std = ((z ** 2) @ (2 * self.log_std).exp() + self.VAR_EPS).sqrt()
        pre = mean + noise
        logp = (-0.5 * ((pre - mean) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi))
        return pre, logp.sum(-1)


@torch.no_grad()
def polyak_update(source: nn.Module, target: nn.Module, tau: float) -> None:
    """target <- tau * source + (1 - tau) * target; an exact copy when ``tau`` is 1."""
    for s, t in zip(source.parameters(), target.parameters(), strict=True):
        t.copy_(s) if tau == 1.0 else t.lerp_(s, tau)


class Critic(nn.Module):
    """``n`` independent Q(s, a) networks (twin critics for TD3 and SAC), stacked outputs."""

    def __init__(self, n_obs: int, n_act: int, hidden: Sequence[int], activation: str = "relu",
                 n: int = 1, orthogonal: bool = True) -> None:
        super().__init__()
        self.qs = nn.ModuleList(mlp(n_obs + n_act, hidden, 1, activation,
                                    orthogonal=orthogonal) for _ in range(n))

    def forward(self, obs: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Q-values of shape ``(n, batch)``."""
        x = torch.cat([obs, actions], -1)
        return torch.stack([q(x).squeeze(-1) for q in self.qs])


# -- stacked members (populations) -----------------------------------------------------------------
class StackedLinear(torch.autograd.Function):
    """``x @ W^T + b`` for K members at once (``x`` [K, B, in], ``W`` [K, out, in], ``b``
    [K, 1, out]) in one batched product, whose backward computes what ``nn.Linear``'s does,
    in the same order (``grad @ W``, ``grad^T @ x``, ``grad.sum``), member by member in one
    ``bmm`` each (autograd's own ``bmm`` backward differs more often: ``bench/stacked.py``).
    Whether a batched product gives each member the bits of its solo ``nn.Linear`` depends on
    the shapes (BLAS picks its kernels by size): ``stacked_linear`` checks before using it."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        return torch.baddbmm(b, x, w.transpose(1, 2))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w = ctx.saved_tensors
        grad_x = grad.bmm(w) if ctx.needs_input_grad[0] else None
        return grad_x, grad.transpose(1, 2).bmm(x), grad.sum(1, keepdim=True)


#: BLAS's results depend on where its operands start (on this CPU, a float matrix starting
#: off a 16-byte boundary gets other bits): a member's slice starts where a solo tensor of
#: its own would, on a 64-byte boundary (PyTorch's CPU allocations' alignment)
ALIGN = 64


def aligned(t: torch.Tensor) -> torch.Tensor:
    """``t``, or a copy of it that starts on an ``ALIGN``-byte boundary."""
    return t if t.data_ptr() % ALIGN == 0 else t.clone()


def aligned_stack(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """``torch.stack(tensors)`` with every member's slice starting on an ``ALIGN``-byte
    boundary (padding between members where their size needs it) and laid out in memory as
    the first tensor is (an F-ordered observation batch stays F-ordered: BLAS gives it
    other bits than a C-ordered one)."""
    out = aligned_zeros(len(tensors), tensors[0])
    for k, t in enumerate(tensors):
        out[k] = t
    return out


def aligned_zeros(count: int, like: torch.Tensor) -> torch.Tensor:
    """Zeros shaped ``[count, *like.shape]`` as ``aligned_stack`` lays them out: each slice
    on an ``ALIGN``-byte boundary, in ``like``'s memory order."""
    order = sorted(range(like.dim()), key=lambda d: -like.stride(d))  # outermost first
    n, unit = like.numel(), ALIGN // like.element_size()
    stride = -(-n // unit) * unit
    buf = torch.zeros(count, stride, dtype=like.dtype, device=like.device)
    dense = buf[:, :n].view(count, *(like.shape[d] for d in order))
    return dense.permute(0, *(order.index(d) + 1 for d in range(like.dim())))


def member_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``StackedLinear``'s result computed member by member with ``nn.Linear``'s own kernels
    (forward and backward) on aligned operands: a solo layer's bits by construction."""
    return torch.stack([nn.functional.linear(aligned(x[k]), aligned(w[k]), b[k, 0])
                        for k in range(len(w))])


#: (shapes, device, dtype, what needs a gradient) -> whether ``StackedLinear`` reproduces
#: ``member_linear`` there
_BATCHED_EXACT: dict[tuple, bool] = {}


def stacked_linear(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """K members' linear layer: one batched product where, for these shapes and memory
    layouts on this device, it gives every member the bits of its solo layer (forward, and
    the gradients the call needs), checked once per shape on random data (BLAS picks its
    kernels by shape and layout, not by value); member by member otherwise."""
    grad = torch.is_grad_enabled() and (x.requires_grad or w.requires_grad)
    key = (tuple(x.shape), x[0].stride(), tuple(w.shape), x.device, x.dtype, grad,
           grad and x.requires_grad)
    if key not in _BATCHED_EXACT:
        _BATCHED_EXACT[key] = _batched_is_exact(x, w, grad, grad and x.requires_grad)
    fn = StackedLinear.apply if _BATCHED_EXACT[key] else member_linear
    return fn(x, w, b)


def _batched_is_exact(x: torch.Tensor, w: torch.Tensor, grad: bool, grad_x: bool,
                      draws: int = 4) -> bool:
    """Whether ``StackedLinear`` equals ``member_linear`` bit for bit at these shapes, on
    operands laid out as a population lays them out (``aligned_stack``). The values span
    many orders of magnitude, so that sums taken in another order round differently (on
    plain normal draws a short sum often comes out the same in any order), ``draws`` times."""
    for draw_seed in range(draws):
        results = []
        for fn in (StackedLinear.apply, member_linear):
            gen = torch.Generator().manual_seed(draw_seed)

            def draw(*shape: int, gen: torch.Generator = gen) -> torch.Tensor:
                scale = torch.exp(3 * torch.randn(shape, generator=gen, dtype=x.dtype))
                return (torch.randn(shape, generator=gen, dtype=x.dtype) * scale).to(x.device)

            with torch.enable_grad():
                xs = aligned_stack([torch.empty_strided(x.shape[1:], x[0].stride(),
                                                        dtype=x.dtype, device=x.device).copy_(m)
                                    for m in draw(*x.shape)]).requires_grad_(grad_x)
                ws = aligned_stack(draw(*w.shape)).requires_grad_(grad)
                bs = aligned_stack(draw(len(w), 1, w.shape[1])).requires_grad_(grad)
                out = fn(xs, ws, bs)
                if grad:
                    out.backward(draw(*out.shape))
            results.append([out.detach(), *((ws.grad, bs.grad) if grad else ()),
                            *((xs.grad,) if grad_x else ())])
        if not all(torch.equal(a, b) for a, b in zip(*results, strict=True)):
            return False
    return True


class StackedMLP:
    """K members' MLPs (``mlp``'s, one shape) run as one network: each layer's weights of
    every member in one tensor ``[K, out, in]`` (bias ``[K, 1, out]``), and each member's
    own parameters turned into views of its slice, so that the member's optimizer steps the
    stacked weights in place and its ``state_dict`` reads them. ``scatter_grads`` hands each
    member the slice of the stacked gradients that is its own."""

    def __init__(self, nets: Sequence[nn.Sequential]) -> None:
        self.layers: list[tuple[torch.Tensor, torch.Tensor, list[nn.Linear]] | nn.Module] = []
        for modules in zip(*nets, strict=True):
            first = modules[0]
            if not isinstance(first, nn.Linear):
                if any(type(m) is not type(first) for m in modules):
                    raise ValueError("stacked members need the same activation in every layer")
                self.layers.append(first)
                continue
            w = aligned_stack([m.weight.detach() for m in modules]).requires_grad_()
            b = aligned_stack([m.bias.detach()[None] for m in modules]).requires_grad_()
            for k, m in enumerate(modules):
                m.weight.data, m.bias.data = w.data[k], b.data[k, 0]
            self.layers.append((w, b, list(modules)))

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = stacked_linear(x, *layer[:2]) if isinstance(layer, tuple) else layer(x)
        return x

    def scatter_grads(self) -> None:
        """Give each member's parameters their slice of the stacked gradients (as a
        backward through the member's own ``nn.Linear`` would), and clear the stacked ones."""
        for layer in self.layers:
            if not isinstance(layer, tuple):
                continue
            w, b, modules = layer
            ws = [None] * len(modules) if w.grad is None else w.grad.unbind()
            bs = [None] * len(modules) if b.grad is None else b.grad[:, 0].unbind()
            for m, wk, bk in zip(modules, ws, bs, strict=True):
                m.weight.grad, m.bias.grad = wk, bk
            w.grad = b.grad = None

    @torch.no_grad()
    def copy_from(self, source: StackedMLP, ks: list[int]) -> None:
        """Members ``ks``' weights set to ``source``'s (of the same shapes), in one indexed
        copy per tensor (the members' parameters are views of them: they see it)."""
        idx = torch.tensor(ks, device=self.device)
        for mine, theirs in zip(self.tensors(), source.tensors(), strict=True):
            if len(ks) == len(mine):
                mine.copy_(theirs)
            else:
                mine.index_copy_(0, idx, theirs.index_select(0, idx))

    def tensors(self) -> list[torch.Tensor]:
        """The stacked weights and biases, layer by layer."""
        return [t for layer in self.layers if isinstance(layer, tuple) for t in layer[:2]]

    @property
    def device(self) -> torch.device:
        return self.tensors()[0].device


# -- image bodies --------------------------------------------------------------------------------
class ImageInput(nn.Module):
    """uint8 frames (or their float copies, 0-255) to float (N, C, H, W) in [0, 1], laid out
    channels-last in memory (the CNN bodies' convolutions are too: ~1.45x faster on a CPU
    for the Nature CNN's update, ``bench/atari.py``); ``last``: the frames come as
    (N, H, W, C)."""

    def __init__(self, last: bool) -> None:
        super().__init__()
        self.last = last

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        x = obs.permute(0, 3, 1, 2) if self.last else obs
        if x.dtype == torch.uint8:  # one pass to float channels-last, then in place
            x = x.to(torch.float32, memory_format=torch.channels_last)
            return x.div_(255.0)
        return x.contiguous(memory_format=torch.channels_last) / 255.0


#: the ``precision`` hyperparameter of an image task: the dtype its CNN body computes in
#: (``None``: float32 throughout; bfloat16: autocast, ``ImageBody``)
PRECISIONS: dict[str, torch.dtype | None] = {"float32": None, "bfloat16": torch.bfloat16}


class ImageBody(nn.Sequential):
    """A CNN torso (``ImageInput``, convolutions, a linear layer) whose convolutions and
    linear layers compute in ``low`` (bfloat16) under ``torch.autocast`` when it is set, and
    whose output is float32 either way: the heads, the losses, the parameters, their
    gradients and the optimizer stay float32 (mixed precision). Its state dict is a plain
    ``nn.Sequential``'s, so a checkpoint loads whatever the precision."""

    def __init__(self, *layers: nn.Module, low: torch.dtype | None = None) -> None:
        super().__init__(*layers)
        self.low = low

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        if self.low is None:
            return super().forward(obs)
        with torch.autocast(obs.device.type, dtype=self.low):
            return super().forward(obs).float()


def nature_cnn(c: int, h: int, w: int, last: bool = False, orthogonal: bool = True,
               low: torch.dtype | None = None) -> tuple[nn.Sequential, int]:
    """Mnih et al. (2015)'s torso for ``c`` x ``h`` x ``w`` frames (``last``: given as
    H x W x C): 32x8x8/4, 64x4x4/2, 64x3x3/1 convolutions, a 512-unit layer, ReLUs.
    ``orthogonal`` init as CleanRL's ``ppo_atari.py``; PyTorch's default init otherwise, as
    its ``dqn_atari.py`` and SB3's DQN; ``low``: the dtype it computes in (``ImageBody``).
    Returns it and its width."""
    init = layer_init if orthogonal else (lambda layer: layer)
    convs = nn.Sequential(
        init(nn.Conv2d(c, 32, 8, stride=4)), nn.ReLU(),
        init(nn.Conv2d(32, 64, 4, stride=2)), nn.ReLU(),
        init(nn.Conv2d(64, 64, 3, stride=1)), nn.ReLU(), nn.Flatten())
    n_flat = _flat_size(convs, c, h, w, "nature", 36)
    convs.to(memory_format=torch.channels_last)
    body = ImageBody(ImageInput(last), convs, init(nn.Linear(n_flat, 512)), nn.ReLU(), low=low)
    return body, 512


class _ResidualBlock(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv0 = nn.Conv2d(channels, channels, 3, padding=1)
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv1(torch.relu(self.conv0(torch.relu(x))))


def impala_cnn(c: int, h: int, w: int, last: bool = False, orthogonal: bool = True,
               low: torch.dtype | None = None) -> tuple[nn.Sequential, int]:
    """Espeholt et al. (2018)'s torso: three stacks of conv, 3x3/2 max-pool and two residual
    blocks (16, 32, 32 channels), then a 256-unit layer (CleanRL's ``ppo_procgen.py``:
    PyTorch's default init for the convolutions; ``orthogonal`` for the last layer); ``low``
    as ``nature_cnn``'s."""
    stacks: list[nn.Module] = []
    channels = c
    for out in (16, 32, 32):
        stacks += [nn.Conv2d(channels, out, 3, padding=1), nn.MaxPool2d(3, stride=2, padding=1),
                   _ResidualBlock(out), _ResidualBlock(out)]
        channels = out
    convs = nn.Sequential(*stacks, nn.ReLU(), nn.Flatten())
    n_flat = _flat_size(convs, c, h, w, "impala", 8)
    convs.to(memory_format=torch.channels_last)
    fc = nn.Linear(n_flat, 256)
    body = ImageBody(ImageInput(last), convs, layer_init(fc) if orthogonal else fc, nn.ReLU(),
                     low=low)
    return body, 256


#: the image bodies a task's ``body`` hyperparameter chooses from
BODIES = {"nature": nature_cnn, "impala": impala_cnn}


def _flat_size(convs: nn.Module, c: int, h: int, w: int, name: str, least: int) -> int:
    """The width of the convolutions' flat output, or a one-line error for too small images."""
    if min(h, w) < least:
        raise ValueError(f"body={name!r} needs images of at least {least}x{least} pixels, not "
                         f"{h}x{w}; use a larger image or another body")
    with torch.no_grad():
        return int(convs(torch.zeros(1, c, h, w)).shape[1])
