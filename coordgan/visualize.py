"""Colour renderings of correspondence maps, like the paper's figures."""

from __future__ import annotations

import numpy as np
import torch


def correspondence_colors(correspondence_map: torch.Tensor) -> np.ndarray:
    """(B, 2, H, W) canonical coordinates in [-1, 1] -> uint8 (B, H, W, 3).

    x goes to red, y to green and blue falls as both grow, so every canonical point has its own
    colour and corresponding pixels of two images share a colour.
    """
    c = ((correspondence_map.detach().float().clamp(-1, 1) + 1) / 2).cpu()
    rgb = torch.stack([c[:, 0], c[:, 1], 1 - (c[:, 0] + c[:, 1]) / 2], -1)
    return (rgb * 255).round().to(torch.uint8).numpy()
