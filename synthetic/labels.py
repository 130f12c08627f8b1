"""Label-map helpers: colour palette, one-hot masks and edge maps (CoCosNet's input domains)."""

from __future__ import annotations

import colorsys

import numpy as np


def palette(num_classes: int = 256) -> np.ndarray:
    """A fixed colour per class id, uint8 [num_classes, 3]; class 0 (background) is black.

    Hues follow the golden angle so neighbouring ids get distant colours; the same id always
    gets the same colour, whatever `num_classes` is.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be at least 1, got {num_classes}")
    colors = np.zeros((num_classes, 3), np.uint8)
    for i in range(1, num_classes):
        hue = (i * 0.618033988749895) % 1.0
        value = 0.95 if i % 2 else 0.75
        saturation = 0.75 if (i // 2) % 2 else 0.55
        colors[i] = np.round(np.array(colorsys.hsv_to_rgb(hue, saturation, value)) * 255)
    return colors


def colorize(labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """Class ids int [..., H, W] -> RGB uint8 [..., H, W, 3] with `palette`."""
    labels = np.asarray(labels)
    if labels.size and labels.min() < 0:
        raise ValueError("labels must be non-negative class ids")
    n = int(labels.max()) + 1 if num_classes is None and labels.size else (num_classes or 1)
    if labels.size and labels.max() >= n:
        raise ValueError(f"labels hold class {int(labels.max())} but num_classes is {n}")
    return palette(n)[labels]


def one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Class ids int [..., H, W] -> float32 [..., C, H, W] masks (channels first, for torch)."""
    labels = np.asarray(labels)
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]")
    eye = np.eye(num_classes, dtype=np.float32)
    return np.moveaxis(eye[labels], -1, -3)


def edge_map(labels: np.ndarray) -> np.ndarray:
    """Boundaries between different classes: bool [..., H, W], one pixel wide.

    A pixel is an edge where its right or lower neighbour has another class, so each boundary
    is marked once, on the upper/left side.
    """
    labels = np.asarray(labels)
    if labels.ndim < 2:
        raise ValueError(f"labels must be [..., H, W], got shape {labels.shape}")
    edges = np.zeros(labels.shape, bool)
    edges[..., :, :-1] |= labels[..., :, :-1] != labels[..., :, 1:]
    edges[..., :-1, :] |= labels[..., :-1, :] != labels[..., 1:, :]
    return edges
