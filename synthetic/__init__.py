"""Procedural image categories with exact dense ground truth (numpy in, numpy out).

>>> import synthetic
>>> batch = synthetic.sample("faces", 4, resolution=64, seed=0)
>>> batch.image.shape, batch.labels.shape, batch.coords.shape
((4, 64, 64, 3), (4, 64, 64), (4, 64, 64, 2))
>>> synthetic.category("faces").class_names[0]
'background'

Every image is a template in canonical coordinates [-1, 1]^2 seen through a smooth random
warp (the structure vector) and coloured independently (the texture vector), so every pixel
knows its part label and canonical coordinate, and every keypoint its pixel position.
"""

from .labels import colorize, edge_map, one_hot, palette
from .renderer import (
    POSES,
    Batch,
    category,
    render,
    sample,
    sample_structures,
    sample_textures,
    structure_names,
    texture_names,
)
from .templates import TEMPLATES

CATEGORIES = tuple(TEMPLATES)

__all__ = [
    "CATEGORIES",
    "POSES",
    "Batch",
    "category",
    "colorize",
    "edge_map",
    "one_hot",
    "palette",
    "render",
    "sample",
    "sample_structures",
    "sample_textures",
    "structure_names",
    "texture_names",
]
