"""Write a synthetic category to disk in the folder layout every dataset of this project uses.

    DIR/images/00000.png ...   RGB images
    DIR/labels/00000.png ...   class ids (8-bit, pixel value = class id, 0 = background)
    DIR/keypoints.json         names, flip permutation and per-image keypoints (pixel units)
    DIR/structure.npy, DIR/texture.npy   the vectors, to re-render exact ground truth (synthetic only)

Real datasets (CelebAMask-HQ, AFHQ, Stanford Cars, ...) go in the same layout; `labels/` and
`keypoints.json` are optional there.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from .renderer import render, sample_structures, sample_textures
from .templates import TEMPLATES


def keypoint_header(name: str) -> dict:
    cat = TEMPLATES[name]
    return {
        "category": name,
        "class_names": list(cat.class_names),
        "keypoint_names": list(cat.keypoint_names),
        "flip_permutation": list(cat.flip_permutation),
    }


def export(name: str, n: int, resolution: int, out: str | os.PathLike, seed: int = 0, pose: str = "aligned",
           chunk: int = 256) -> Path:
    """Render `n` images of `name` into `out` (see the module docstring for the layout)."""
    if name not in TEMPLATES:
        raise ValueError(f"unknown category {name!r}; choose one of {sorted(TEMPLATES)}")
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    out = Path(out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "labels").mkdir(parents=True, exist_ok=True)
    structure = sample_structures(name, n, seed, pose)
    texture = sample_textures(name, n, seed)
    digits = max(5, len(str(n - 1)))
    annotations = {}
    for start in range(0, n, chunk):
        batch = render(name, structure[start : start + chunk], texture[start : start + chunk], resolution)
        for i in range(len(batch)):
            file = f"{start + i:0{digits}d}.png"
            Image.fromarray(batch.image[i]).save(out / "images" / file)
            Image.fromarray(batch.labels[i].astype(np.uint8), mode="L").save(out / "labels" / file)
            annotations[file] = {
                "keypoints": np.round(batch.keypoints[i].astype(np.float64), 4).tolist(),
                "visible": batch.visible[i].tolist(),
            }
    header = keypoint_header(name) | {"resolution": resolution, "seed": seed, "pose": pose}
    _write_json(out / "keypoints.json", header | {"images": annotations})
    np.save(out / "structure.npy", structure)
    np.save(out / "texture.npy", texture)
    return out


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, path)  # atomic: a reader never sees half a file


def grid(name: str, rows: int = 4, cols: int = 6, resolution: int = 96, seed: int = 0,
         pose: str = "aligned") -> np.ndarray:
    """A uint8 image grid: the same structure along each row, the same texture down each column."""
    structure = np.repeat(sample_structures(name, rows, seed, pose), cols, axis=0)
    texture = np.tile(sample_textures(name, cols, seed + 1), (rows, 1))
    image = render(name, structure, texture, resolution).image
    return image.reshape(rows, cols, resolution, resolution,
                         3).transpose(0, 2, 1, 3, 4).reshape(rows * resolution, cols * resolution, 3)
