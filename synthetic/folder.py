"""Read the folder layout that `python -m synthetic export` writes (and real datasets share).

    DIR/images/*.png|jpg|...   RGB images (or the images directly in DIR)
    DIR/labels/*.png           optional class-id maps, same relative names as the images
    DIR/keypoints.json         optional: class names, flip permutation, per-image keypoints in pixels

Every item is a dict of tensors: "image" float32 [3, H, W] in [-1, 1]; optionally "labels"
int64 [H, W], "keypoints" float32 [K, 2] (pixels, x right, y down) and "visible" bool [K].
Training (train/data.py) and evaluation (`<package>.evaluate --data folder:PATH`) both read
folders through this module; it lives beside export.py, which writes the layout.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"}


def image_to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 [H, W, 3] (or [n, H, W, 3]) -> float32 [3, H, W] (or [n, 3, H, W]) in [-1, 1]."""
    t = torch.from_numpy(np.array(image, np.float32)).div_(127.5).sub_(1)
    return t.movedim(-1, -3)


def tensor_to_image(t: torch.Tensor) -> np.ndarray:
    """The inverse of `image_to_tensor`: [-1, 1] floats -> uint8 channels-last."""
    t = ((t.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return t.movedim(-3, -1).cpu().numpy()


class ImageFolderDataset(Dataset):
    """Images (and optional label maps and keypoints) from a folder, resized and centre-cropped.

    Files that are not readable images are skipped with one warning that counts them; a file
    that only fails when decoded later is replaced by the next good one, with a warning.
    """

    def __init__(self, root: str | os.PathLike, resolution: int = 64, labels: bool | None = None):
        root = Path(root)
        if not root.is_dir():
            raise ValueError(f"dataset folder {str(root)!r} does not exist")
        image_dir = root / "images" if (root / "images").is_dir() else root
        label_dir = root / "labels"
        candidates = sorted(p for p in image_dir.rglob("*")
                            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and label_dir not in p.parents)
        self.files, skipped = [], []
        for p in candidates:
            try:
                with Image.open(p) as im:
                    im.size  # the header parses: a real image
                self.files.append(p)
            except Exception:
                skipped.append(p.name)
        if skipped:
            shown = ", ".join(skipped[:5]) + (", ..." if len(skipped) > 5 else "")
            warnings.warn(f"skipped {len(skipped)} of {len(candidates)} files in {image_dir} that are not readable "
                          f"images: {shown}", stacklevel=2)
        if not self.files:
            raise ValueError(f"no readable images ({', '.join(sorted(IMAGE_EXTENSIONS))}) in {image_dir}")
        self.resolution = resolution
        self.image_dir = image_dir
        has_labels = label_dir.is_dir()
        if labels and not has_labels:
            raise ValueError(f"label maps requested but {label_dir} does not exist")
        self.label_dir = label_dir if (has_labels if labels is None else labels) else None
        if self.label_dir is not None:
            missing = [p.name for p in self.files if not self._label_path(p).is_file()]
            if missing:
                raise ValueError(f"{len(missing)} images have no label map in {label_dir}, e.g. {missing[0]}")
        meta_path = root / "keypoints.json"
        self.meta = json.loads(meta_path.read_text()) if meta_path.is_file() else None
        self.class_names = tuple(self.meta["class_names"]) if self.meta and "class_names" in self.meta else None
        self.skipped_at_load = 0

    def _label_path(self, image_path: Path) -> Path:
        return self.label_dir / image_path.relative_to(self.image_dir).with_suffix(".png")

    def __len__(self) -> int:
        return len(self.files)

    def _crop_box(self, size: tuple[int, int]) -> tuple[int, int, int, int]:
        """Scale so the short side is `resolution`, then a centred square crop."""
        w, h = size
        scale = self.resolution / min(w, h)
        nw, nh = max(self.resolution, round(w * scale)), max(self.resolution, round(h * scale))
        return nw, nh, (nw - self.resolution) // 2, (nh - self.resolution) // 2

    def load(self, index: int) -> dict:
        path = self.files[index]
        with Image.open(path) as im:
            image = im.convert("RGB")
        w0, h0 = image.size
        nw, nh, left, top = self._crop_box(image.size)
        box = (left, top, left + self.resolution, top + self.resolution)
        image = image.resize((nw, nh), Image.BICUBIC, reducing_gap=3.0).crop(box)
        item = {"image": image_to_tensor(np.asarray(image))}
        if self.label_dir is not None:
            with Image.open(self._label_path(path)) as lab:
                if lab.mode not in ("L", "P", "I", "I;16"):
                    raise ValueError(f"label map {lab.filename} must hold class ids (mode L, P or I), got "
                                     f"mode {lab.mode}")
                labels = lab.resize((nw, nh), Image.NEAREST).crop(box)
            item["labels"] = torch.from_numpy(np.asarray(labels).astype(np.int64))
        if self.meta is not None and path.name in self.meta.get("images", {}):
            ann = self.meta["images"][path.name]
            kp = np.asarray(ann["keypoints"], np.float32) * np.float32([nw / w0, nh / h0]) - np.float32([left, top])
            visible = np.asarray(ann["visible"], bool) & (kp >= 0).all(1) & (kp < self.resolution).all(1)
            item["keypoints"], item["visible"] = torch.from_numpy(kp), torch.from_numpy(visible)
        return item

    def __getitem__(self, index: int) -> dict:
        for k in range(len(self.files)):
            i = (index + k) % len(self.files)
            try:
                return self.load(i)
            except (OSError, SyntaxError) as error:  # truncated or corrupt after the header
                self.skipped_at_load += 1
                warnings.warn(f"skipping unreadable image {self.files[i]} ({error}); {self.skipped_at_load} "
                              "skipped so far", stacklevel=2)
        raise ValueError(f"no image in {self.image_dir} could be decoded")
