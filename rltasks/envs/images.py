"""What makes an observation space an image, and how its axes lie.

An image is a uint8 ``Box`` of rank 3: frames x height x width (ALE's stacked grayscale
frames, rltasks' Catch) or height x width x channels (RGB renders). The loader keeps such
observations uint8, the replay buffers store them so, and the CNN bodies scale them.
"""

from __future__ import annotations

from gymnasium import spaces


def is_image_space(space: spaces.Space) -> bool:
    """A uint8 ``Box`` of rank 3."""
    return (isinstance(space, spaces.Box) and len(space.shape) == 3
            and str(space.dtype) == "uint8")


def image_layout(shape: tuple[int, ...]) -> tuple[int, int, int, bool]:
    """``(channels, height, width, channels_last)`` of an image shape: channels last when the
    last axis is a channel count (1, 3 or 4) and the first is not."""
    last = shape[-1] in (1, 3, 4) and shape[0] not in (1, 3, 4)
    c, h, w = (shape[2], shape[0], shape[1]) if last else shape
    return int(c), int(h), int(w), last
