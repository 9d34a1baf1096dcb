"""A video of a trained agent (``rltasks record RUN_DIR --out video.gif``).

The task is rebuilt from the run's checkpoint (``rltasks.trial.payload``) and its
deterministic policy plays ``episodes`` episodes in one env made with
``render_mode="rgb_array"``, observations normalised as in evaluation; on Atari (ale-py's
or EnvPool's vector env, which render nothing) it films what the policy sees. Frames go to a GIF
(imageio or Pillow), or to an mp4 when imageio-ffmpeg is installed.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from rltasks.envs import VecLoader, derive_seed
from rltasks.envs.flat import flat_observations
from rltasks.envs.images import image_layout
from rltasks.envs.registry import check_env_id, make_env
from rltasks.trial.payload import load_task

#: gymnasium's classic-control rendering uses pygame: no window, no display needed
os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

FORMATS = (".gif", ".mp4")
MAX_STEPS = 10_000  # per episode, for envs without a time limit


def _batch(obs: Any) -> Any:
    """One observation as a batch of one (dict observations of goal envs key by key)."""
    if isinstance(obs, dict):
        return {k: np.asarray(v)[None] for k, v in obs.items()}
    return np.asarray(obs)[None]


def play(task: Any, episodes: int = 1, seed: int | None = None) -> tuple[list[np.ndarray],
                                                                          list[float]]:
    """Frames and returns of ``episodes`` deterministic episodes of ``task``'s policy."""
    if getattr(task.loader, "atari", False):
        return _play_seen(task, episodes, seed)
    spec = check_env_id(task.env_id)  # the task imported its module already, if any
    probe = make_env(spec, **task.env_kwargs)
    modes = probe.metadata.get("render_modes", [])
    probe.close()
    if "rgb_array" not in modes:
        raise ValueError(f"{task.env_id} does not render rgb_array frames (its render modes: "
                         f"{modes or 'none'}): nothing to record")
    # observations flattened as the loader's are
    env = flat_observations(make_env(spec, render_mode="rgb_array", **task.env_kwargs))
    frames: list[np.ndarray] = []
    returns: list[float] = []
    try:
        for episode in range(episodes):
            obs, _ = env.reset(seed=derive_seed(task.seed if seed is None else seed, 5, episode))
            frames.append(_first_frame(env, task.env_id))
            total, done, steps = 0.0, False, 0
            while not done and steps < MAX_STEPS:
                action = np.asarray(task.act(task.loader.normalize_obs(_batch(obs))))[0]
                obs, reward, term, trunc, _ = env.step(action)
                frames.append(np.asarray(env.render()))
                total += float(reward)
                done, steps = bool(term or trunc), steps + 1
            returns.append(total)
    finally:
        env.close()
    return frames, returns


def _play_seen(task: Any, episodes: int, seed: int | None) -> tuple[list[np.ndarray],
                                                                     list[float]]:
    """``play`` for Atari through ale-py's or EnvPool's vector env, which render nothing:
    the frames are what the policy sees (the newest 84 x 84 grayscale frame of each stack),
    the returns the game's scores."""
    loader = VecLoader(task.env_id, 1, task.loader.vectorization, env_kwargs=task.env_kwargs)
    layout = image_layout(loader.single_observation_space.shape)
    frames: list[np.ndarray] = []
    returns: list[float] = []
    try:
        for episode in range(episodes):
            obs = loader.reset(derive_seed(task.seed if seed is None else seed, 5, episode))
            frames.append(_newest(obs[0], layout[3]))
            total, done, steps = 0.0, False, 0
            while not done and steps < MAX_STEPS:
                obs, reward, term, trunc, final = loader.step(task.act(obs), train=False)
                done, steps = bool(term[0] or trunc[0]), steps + 1
                frames.append(_newest((final if done else obs)[0], layout[3]))
                total += float(reward[0])
            returns.append(total)
    finally:
        loader.close()
    return frames, returns


def _newest(stack: np.ndarray, last: bool) -> np.ndarray:
    """The newest frame of a stack (C x H x W, or H x W x C with ``last``) as H x W x 3."""
    frame = stack[..., -1] if last else stack[-1]
    return np.repeat(frame[..., None], 3, axis=2)


def _first_frame(env: Any, env_id: str) -> np.ndarray:
    """The first frame of an episode, or a one-line error when the env cannot render here
    (MuJoCo without an OpenGL back-end raises its own FatalError)."""
    try:
        return np.asarray(env.render())
    except Exception as err:  # the renderer's own error types vary by back-end
        detail = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise ValueError(f"{env_id} cannot render frames on this machine ({type(err).__name__}: "
                         f"{detail[:160]}); MuJoCo needs an OpenGL back-end: MUJOCO_GL=egl or "
                         f"MUJOCO_GL=osmesa with that library installed") from None


def write_video(frames: list[np.ndarray], out: Path, fps: int) -> None:
    """Write ``frames`` (H x W x 3 uint8) as a GIF or an mp4, chosen by ``out``'s suffix."""
    if out.suffix == ".mp4":
        import imageio.v2 as imageio

        imageio.mimwrite(out, frames, fps=fps, macro_block_size=1)
        return
    from PIL import Image

    images = [Image.fromarray(np.asarray(f, np.uint8)) for f in frames]
    images[0].save(out, save_all=True, append_images=images[1:],
                   duration=max(1, round(1000 / fps)), loop=0)


def record_run(run: str | Path, out: str | Path | None = None, episodes: int = 1,
               best: bool = False, fps: int = 30, env_module: str | None = None
               ) -> dict[str, Any]:
    """Record ``episodes`` episodes of run ``run``'s deterministic policy to ``out``."""
    if episodes < 1:
        raise ValueError(f"--episodes {episodes} must be >= 1")
    out = Path(out) if out else Path(run if Path(run).is_dir() else Path(run).parent) / (
        "video.gif")
    if out.suffix not in FORMATS:
        raise ValueError(f"--out {out}: write a .gif (or an .mp4 with imageio-ffmpeg)")
    if out.suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError:
            raise ValueError(f"--out {out}: mp4 needs imageio-ffmpeg (pip install "
                             f"imageio-ffmpeg); write a .gif instead") from None
    task = load_task(run, best=best, env_module=env_module, in_process=True)
    try:
        if task.loader.multi_agent:
            raise ValueError(f"record does not handle multi-agent tasks ({task.name} on "
                             f"{task.env_id}); evaluate it with `rltasks eval` instead")
        frames, returns = play(task, episodes)
    finally:
        task.close()
    if not frames or frames[0] is None or np.asarray(frames[0]).ndim != 3:
        raise ValueError(f"{task.env_id} renders no rgb_array frames")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_video(frames, out, fps)
    height, width = np.asarray(frames[0]).shape[:2]
    return {"task": task.name, "env": task.env_id, "file": str(out), "episodes": episodes,
            "frames": len(frames), "size": [int(width), int(height)],
            "returns": returns}
