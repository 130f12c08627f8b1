"""Where the model's S x S input lies in an image of any size (its centred square crop), and points
moved between the image's pixels and the model's.

Points are (x, y) pixel indices: the centre of pixel (i, j) is (i, j).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class CropFrame:
    """The centred square crop of a width x height image that the model reads (resized to S x S)."""

    left: float
    top: float
    side: float
    width: int
    height: int


def crop_frame(size: tuple[int, int]) -> CropFrame:
    """The crop frame of an image of size (H, W): nothing is decoded or resized."""
    h, w = size
    side = min(w, h)
    return CropFrame((w - side) // 2, (h - side) // 2, side, w, h)


def to_model_pixels(points: np.ndarray, frame: CropFrame, input_size: int) -> np.ndarray:
    """(N, 2) pixels of the image -> pixels of the model's S x S input."""
    return (points + 0.5 - [frame.left, frame.top]) * (input_size / frame.side) - 0.5


def from_model_pixels(points: np.ndarray, frame: CropFrame, input_size: int) -> np.ndarray:
    """(N, 2) pixels of the model's S x S input -> pixels of the image."""
    return (points + 0.5) * (frame.side / input_size) - 0.5 + [frame.left, frame.top]
