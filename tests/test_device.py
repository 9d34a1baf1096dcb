"""``make_task(..., device=...)`` is honoured by every task (issue 12).

- ``rltasks.device.resolve_device``: "cpu", "cuda", "cuda:N", "mps", "auto"; an unavailable
  or unknown device is a one-line ``ValueError`` naming it and the fix, through ``make_task``
  and through ``scripts/ppo.py`` (exit 2);
- for every task of ``rltasks.known_tasks()`` on every device this machine has: its networks,
  optimizer states, rollouts, sampled batches, noise and policy are on ``task.device``;
- checkpoints are device-independent: ``state_dict`` holds CPU tensors only, the payload has
  no ``device`` entry and the run's identity (``fixed``) none either, and a run saved on one
  device resumes on ``device="auto"`` (a GPU where there is one) and back.

The cases of a device this machine lacks are skipped, never faked: the GPU path is the same
code (``resolve_device``, ``Task.tensor``, ``to_cpu``) and runs here only with device="cpu".
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import torch
from helpers import run_script
from test_contract import TASKS, make

import rltasks
from rltasks import checkpoint
from rltasks.device import resolve_device, to_cpu
from rltasks.explore import NOISE_HPARAMS, NOISES, make_noise
from rltasks.tasks.offpolicy import NoisyActorTask, OffPolicyTask
from rltasks.tasks.onpolicy import OnPolicyTask
from rltasks.trial.options import resolve
from rltasks.trial.payload import make_payload, same_run_checker
from rltasks.trial.prepare import build_task

# every skip here is hardware this machine lacks (or has): allowed in CI too
pytestmark = pytest.mark.may_skip


def available(spec: str) -> bool:
    """Whether this machine has device ``spec``."""
    if spec.startswith("cuda"):
        index = int(spec.partition(":")[2] or 0)
        return torch.cuda.is_available() and index < torch.cuda.device_count()
    return spec == "cpu" or (spec == "mps" and torch.backends.mps.is_available())


def skip_unless_available(spec: str) -> None:
    if not available(spec):
        pytest.skip(f"{spec} is not available on this machine")


def skip_if_available(spec: str) -> None:
    if available(spec):
        pytest.skip(f"{spec} is available on this machine: nothing to refuse")


# -- resolving a device ----------------------------------------------------------------------
@pytest.mark.parametrize("spec", ["cuda", "cuda:1", "mps"])
def test_an_unavailable_device_is_a_one_line_error_naming_it_and_the_fix(spec):
    skip_if_available(spec)
    with pytest.raises(ValueError) as info:
        resolve_device(spec)
    message = str(info.value)
    assert "\n" not in message
    assert f"device={spec!r} is not available on this machine" in message
    assert "use device='cpu' or 'auto'" in message


@pytest.mark.parametrize("spec", ["tpu", "cuda:x", "", "gpu"])
def test_an_unknown_device_is_a_one_line_error_listing_the_devices(spec):
    with pytest.raises(ValueError) as info:
        resolve_device(spec)
    assert str(info.value) == (f"device={spec!r} is not a device: use 'cpu', 'cuda', "
                               f"'cuda:N', 'mps' or 'auto'")


def test_a_torch_device_rltasks_does_not_train_on_is_refused():
    with pytest.raises(ValueError, match=r"device='meta': rltasks runs on 'cpu', 'cuda'.* "
                                         r"not on meta"):
        resolve_device("meta")


def test_cpu_and_auto_resolve_to_the_cpu_here():
    assert resolve_device("cpu") == resolve_device(" CPU ") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == resolve_device("cpu:0") == torch.device("cpu")
    if not (torch.cuda.is_available() or torch.backends.mps.is_available()):
        assert resolve_device("auto") == torch.device("cpu")


def test_cuda_gets_its_index_and_a_missing_index_names_the_devices_there_are(monkeypatch):
    """As on a machine with one GPU (torch's own answers to the questions resolve_device
    asks, nothing allocated): "cuda" and "auto" are cuda:0, as tensors report it; cuda:3 is
    one line naming the one device there is."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert resolve_device("cuda") == resolve_device("auto") == torch.device("cuda", 0)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    with pytest.raises(ValueError) as info:
        resolve_device("cuda:3")
    assert str(info.value) == ("device='cuda:3' is not available on this machine (it has 1 "
                               "CUDA device: cuda:0); use device='cuda', 'cuda:N' with N < 1, "
                               "'cpu' or 'auto'")


@pytest.mark.parametrize("spec", ["cuda", "cuda:1", "mps", "tpu"])
def test_make_task_refuses_a_device_in_one_line_before_building_the_envs(spec, monkeypatch):
    skip_if_available(spec)
    built = []
    monkeypatch.setattr(rltasks.REGISTRY["ppo"], "LOADER",
                        lambda *args, **kwargs: built.append(args))
    with pytest.raises(ValueError) as info:
        rltasks.make_task("ppo", env="CartPole-v1", device=spec)
    assert "\n" not in str(info.value) and f"device={spec!r}" in str(info.value)
    assert not built, "the envs were built before the device was checked"


@pytest.mark.parametrize("spec", ["cuda", "tpu"])
def test_the_scripts_refuse_a_device_in_one_line_with_exit_2(spec, tmp_path):
    skip_if_available(spec)
    proc = run_script("ppo", "--device", spec, "--epochs", "1", workdir=tmp_path / "run")
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: device={spec!r} "), proc.stderr


def test_the_run_option_defaults_to_the_cpu_and_reaches_make_task():
    options, _ = resolve("ppo", [])
    assert options["device"] == "cpu"
    options, hparams = resolve("ppo", ["--device", "auto", "--num-envs", "1"])
    task = build_task("ppo", options, hparams)
    try:
        assert task.device == resolve_device("auto")
        assert "device" not in task.fixed
    finally:
        task.close()


# -- every task on its device ----------------------------------------------------------------
def tensors(tree: Any, path: str = "") -> Iterator[tuple[str, torch.Tensor]]:
    """(path, tensor) of every tensor in nested dicts, lists and tuples."""
    if isinstance(tree, torch.Tensor):
        yield path, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from tensors(value, f"{path}.{key}")
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from tensors(value, f"{path}[{i}]")


def keys(tree: Any) -> Iterator[Any]:
    """Every mapping key in nested dicts, lists and tuples."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield key
            yield from keys(value)
    elif isinstance(tree, (list, tuple)):
        for value in tree:
            yield from keys(value)


def off(device: torch.device, tree: Any) -> list[str]:
    """The tensors of ``tree`` that are not on ``device``, with where they are."""
    return [f"{path} on {t.device}" for path, t in tensors(tree) if t.device != device]


def optimizer_off(task: Any) -> list[str]:
    """Optimizer state off the parameters' device. Non-fused optimizers (RMSprop, Adamax) keep
    their ``step`` on the CPU, as torch.optim does; the fused Adam keeps it on the device."""
    found = []
    for name, opt in task.optimizers.items():
        cpu_step = type(opt).name not in ("adam", "adamw")
        for i, state in opt.state.items():
            for key, value in state.items():
                where = torch.device("cpu") if key == "step" and cpu_step else task.device
                if value.device != where:
                    found.append(f"optimizers.{name}.state[{i}].{key} on {value.device}")
    return found


def samples_off(task: Any) -> list[str]:
    """What the task computes with, drawn again: a rollout, or a replay batch, the noise and
    the exploration's actions, each off the task's device."""
    if isinstance(task, OnPolicyTask):
        return off(task.device, task.collect(4))
    found = off(task.device, task.buffer.sample(8, np.random.default_rng(0)))
    gen = torch.Generator().manual_seed(0)
    if isinstance(task, NoisyActorTask):
        found += off(task.device, {"noise": task.noise.sample(task.env_steps, gen),
                                   "noise_state": task.noise.state_dict()})
    else:
        q = task.q(task.tensor(task.obs))
        found += off(task.device, {"policy": task.policy.select(q, task.env_steps, gen)})
    return found


@pytest.mark.parametrize("spec", ["cpu", "cuda", "mps"])
@pytest.mark.parametrize("name", TASKS)
def test_every_part_of_every_task_is_on_its_device(name, spec):
    skip_unless_available(spec)
    task = make(name, device=spec).init()
    try:
        task.fit(2)  # maddpg's first update comes in its second tiny epoch
        device = resolve_device(spec)
        assert task.device == device
        assert isinstance(task, (OnPolicyTask, OffPolicyTask))
        nets = {k: m.state_dict(keep_vars=True) for k, m in task.modules.items()}
        module = task.policy_module()
        found = [*off(device, nets), *optimizer_off(task), *samples_off(task),
                 *off(device, dict(module.named_buffers())),
                 *off(device, dict(module.named_parameters()))]
        assert not found, f"{name} on {spec}: off the device: {found}"
        assert task.optimizers and all(opt.state for opt in task.optimizers.values()), (
            "an optimizer never stepped: its state was not checked")
        assert isinstance(task.act(task.loader.normalize_obs(task.obs)), np.ndarray)
    finally:
        task.close()


@pytest.mark.parametrize("spec", ["cpu", "cuda", "mps"])
@pytest.mark.parametrize("name", TASKS)
def test_a_checkpoint_carries_nothing_of_the_device(name, spec):
    skip_unless_available(spec)
    task = make(name, device=spec).init()
    try:
        task.fit(1)
        payload = make_payload(task)
    finally:
        task.close()
    assert not off(torch.device("cpu"), payload), f"{name}: tensors off the CPU in the payload"
    assert "device" not in set(keys(payload)), f"{name}: a 'device' entry in the payload"
    assert "device" not in payload["fixed"]


@pytest.mark.parametrize("spec", ["cpu", "cuda", "mps"])
@pytest.mark.parametrize("noise", sorted(NOISES))
def test_every_noise_samples_and_keeps_its_state_on_its_device(noise, spec):
    skip_unless_available(spec)
    device = resolve_device(spec)
    hp = {**{k: v.default for k, v in NOISE_HPARAMS.items()}, "noise": noise}
    process = make_noise(hp, num_envs=3, act_dim=2, device=device)
    gen = torch.Generator().manual_seed(0)
    drawn = process.sample(0, gen).clone()  # OU hands out its state, which reset changes
    process.reset(torch.tensor([True, False, True]))
    state = process.state_dict()
    process.load_state_dict(to_cpu(state))
    assert not off(device, {"sample": drawn, "state": state, "again": process.state_dict(),
                            "next": process.sample(1, gen)})
    # the same random stream on every device: drawn from the CPU generator, then moved
    on_cpu = make_noise(hp, num_envs=3, act_dim=2).sample(0, torch.Generator().manual_seed(0))
    torch.testing.assert_close(drawn.cpu(), on_cpu)


def test_on_the_cpu_the_state_is_not_copied():
    """``to_cpu`` hands a CPU state back as it is (the same objects): a CPU run's checkpoints
    and numbers stay what they were before devices."""
    task = make("ppo", device="cpu").init()
    try:
        modules = {k: m.state_dict() for k, m in task.modules.items()}
        assert to_cpu(modules) is modules
        saved = task.state_dict()["modules"]
        for key, module in task.modules.items():
            for pname, param in module.named_parameters():  # as nn.Module.state_dict gives it
                assert saved[key][pname].data_ptr() == param.data_ptr(), f"{key}.{pname}"
    finally:
        task.close()


class Elsewhere(torch.Tensor):
    """A CPU tensor that answers ``cpu()`` with a copy, as a tensor on a GPU would: what
    ``to_cpu`` does with containers holding one, without a GPU."""

    def cpu(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.as_subclass(torch.Tensor).clone()


def test_to_cpu_rebuilds_only_the_containers_of_a_tensor_off_the_cpu():
    moved, kept = torch.ones(2).as_subclass(Elsewhere), torch.zeros(1)
    inner = OrderedDict(w=moved, b=kept)
    inner._metadata = {"": {"version": 1}}  # what nn.Module.state_dict attaches
    tree = {"net": inner, "other": {"x": kept}, "seq": [moved, 3], "pair": (kept, "a")}
    out = to_cpu(tree)
    assert out is not tree and out["net"] is not inner and out["seq"] is not tree["seq"]
    assert type(out["net"]) is OrderedDict and out["net"]._metadata == inner._metadata
    assert type(out["net"]["w"]) is torch.Tensor and out["net"]["b"] is kept
    assert out["other"] is tree["other"] and out["pair"] is tree["pair"]
    assert out["seq"][1] == 3 and torch.equal(out["seq"][0], torch.ones(2))


@pytest.mark.parametrize("name", TASKS)
def test_a_run_saved_on_one_device_resumes_on_another_and_back(name, tmp_path):
    """Saved with device="cpu", resumed with device="auto" (a GPU where there is one, so the
    GPU machine checks the crossing), saved there and resumed on the CPU: the same run to the
    run checker, the networks loaded exactly, and training goes on."""
    first = make(name, device="cpu").init()
    try:
        first.fit(1)
        checkpoint.save(tmp_path / "cpu.ckpt", make_payload(first))
        trained = {k: m.state_dict() for k, m in first.modules.items()}
    finally:
        first.close()
    payload = checkpoint.load(tmp_path / "cpu.ckpt")
    elsewhere = make(name, device="auto").init()
    try:
        same_run_checker(elsewhere, tmp_path)(payload)  # device is not the run's identity
        elsewhere.load_state_dict(payload["state"])
        for key, module in elsewhere.modules.items():
            for param, value in module.state_dict().items():
                assert torch.equal(value.cpu(), trained[key][param]), f"{key}.{param}"
        elsewhere.fit(2)
        checkpoint.save(tmp_path / "auto.ckpt", make_payload(elsewhere))
    finally:
        elsewhere.close()
    back = make(name, device="cpu").init()
    try:
        back.load_state_dict(checkpoint.load(tmp_path / "auto.ckpt")["state"])
        assert back.epoch == 2
        back.fit(3)
        assert back.epoch == 3
    finally:
        back.close()
