"""Export a run's deterministic policy alone (``rltasks export RUN_DIR --format ...``).

The module maps a batch of raw flat observations to env actions (``Task.policy_module``:
observation normalisation, network, action rescaling or argmax). Before the file is kept its
actions are checked against the task's own ``act`` on sample observations; an ONNX file is
checked by running it in onnxruntime. The run is loaded on the CPU (whatever device trained
it: checkpoints are device-independent), so the exported policy is a CPU module. A run
trained with ``precision='bfloat16'`` exports as TorchScript in bfloat16 and as ONNX in float32
(onnxruntime has no bfloat16 convolutions; its actions are checked against the task's own
computed in float32 too).
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rltasks.nets import ImageBody
from rltasks.trial.payload import load_task

FORMATS = ("torchscript", "onnx")


def sample_observations(task: Any, n: int = 64) -> np.ndarray:
    """Observations from the space (seeded), clipped to a plausible range for unbounded dims,
    shaped as the env gives them (flat, or agents x observation for several agents)."""
    space = task.observation_space
    space.seed(12345)
    obs = np.stack([space.sample() for _ in range(n)]).astype(np.float32)
    return np.clip(obs, -10.0, 10.0)


def export_run(run: str | Path, fmt: str = "torchscript", out: str | Path | None = None,
               best: bool = False, env_module: str | None = None) -> dict[str, Any]:
    """Write the policy of run ``run`` as ``fmt``; return the parity report. Raises
    ``ValueError`` if the exported policy's actions differ from the task's."""
    if fmt not in FORMATS:
        raise ValueError(f"--format {fmt!r}: choose one of {list(FORMATS)}")
    task = load_task(run, best=best, env_module=env_module, in_process=True,
                     device="cpu")
    try:
        out = Path(out) if out else Path(run if Path(run).is_dir() else Path(run).parent) / (
            "policy.pt" if fmt == "torchscript" else "policy.onnx")
        if fmt == "onnx":  # onnxruntime has no bfloat16 convolutions: export in float32
            for body in (m for net in task.modules.values() for m in net.modules()
                         if isinstance(m, ImageBody)):
                body.low = None
        module = task.policy_module().eval()
        obs = sample_observations(task)
        expected = np.asarray(task.act(task.loader.normalize_obs(obs)))
        example = torch.from_numpy(obs)
        if fmt == "torchscript":
            with torch.no_grad():
                traced = torch.jit.trace(module, example)
            traced.save(str(out))
            got = torch.jit.load(str(out))(example).detach().numpy()
        else:
            got = _onnx(module, example, out, obs)
    finally:
        task.close()
    got = got.reshape(expected.shape)
    if expected.dtype.kind in "iu":
        diff = float(np.abs(got.astype(np.int64) - expected.astype(np.int64)).max())
        ok = diff == 0
    else:
        diff = float(np.abs(got - expected).max())
        ok = diff <= 1e-4 * max(1.0, float(np.abs(expected).max()))
    report = {"task": task.name, "env": task.env_id, "format": fmt, "file": str(out),
              "observations": len(obs), "max_abs_diff": diff, "parity": ok}
    if not ok:
        out.unlink(missing_ok=True)
        raise ValueError(f"exported policy disagrees with the task's actions (max difference "
                         f"{diff:g} on {len(obs)} observations); nothing written")
    return report


def _onnx(module: torch.nn.Module, example: torch.Tensor, out: Path, obs: np.ndarray
          ) -> np.ndarray:
    try:
        import onnx
        import onnxruntime
    except ImportError:
        raise ValueError("--format onnx needs onnx and onnxruntime: "
                         "pip install 'rltasks[export]'") from None
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript-based exporter is deprecated
        torch.onnx.export(module, (example,), str(out), input_names=["obs"],
                          output_names=["action"], dynamic_axes={"obs": {0: "batch"},
                                                                 "action": {0: "batch"}},
                          dynamo=False)
    onnx.checker.check_model(onnx.load(str(out)))
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    return session.run(None, {"obs": obs})[0]
