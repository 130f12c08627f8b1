"""Datasets for every training script and evaluation: synthetic categories or image folders.

A dataset is named by a spec string, the `--data` flag of the training scripts:

    synthetic:faces          an infinite, seeded stream of rendered images (any category)
    folder:PATH              images from PATH/images (or PATH itself), with PATH/labels/*.png
                             (class ids) and PATH/keypoints.json when present: the layout that
                             `python -m synthetic export` writes

Every item is a dict of tensors: "image" float32 [3, H, W] in [-1, 1]; optionally "labels"
int64 [H, W], "keypoints" float32 [K, 2] (pixels, x right, y down) and "visible" bool [K].
"""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from synthetic.folder import IMAGE_EXTENSIONS, ImageFolderDataset, image_to_tensor, tensor_to_image  # noqa: F401 (re-exported)


class SyntheticDataset(IterableDataset):
    """An endless, seeded stream of rendered images of one synthetic category.

    Rendered in blocks; block b of stream (seed, rank, worker) uses seed (seed, b, stream), so
    every process and every DataLoader worker sees different images, and a run with the same
    seed and layout sees the same ones.
    """

    def __init__(self, category: str, resolution: int = 64, seed: int = 0, pose: str = "aligned",
                 rank: int = 0, world_size: int = 1, block: int = 64):
        import synthetic

        if category not in synthetic.CATEGORIES:
            raise ValueError(f"unknown synthetic category {category!r}; choose one of {list(synthetic.CATEGORIES)}")
        if pose not in synthetic.POSES:
            raise ValueError(f"unknown pose range {pose!r}; choose one of {sorted(synthetic.POSES)}")
        self.category, self.resolution, self.seed, self.pose = category, resolution, seed, pose
        self.rank, self.world_size, self.block = rank, world_size, block
        cat = synthetic.category(category)
        self.class_names, self.keypoint_names = cat.class_names, cat.keypoint_names
        self.flip_permutation = cat.flip_permutation

    def __iter__(self):
        import synthetic

        info = get_worker_info()
        workers, worker = (info.num_workers, info.id) if info else (1, 0)
        stream = self.rank * workers + worker
        b = 0
        while True:
            batch = synthetic.sample(self.category, self.block, self.resolution, seed=(self.seed, b, stream),
                                     pose=self.pose)
            images = image_to_tensor(batch.image)
            for i in range(len(batch)):
                yield {
                    "image": images[i],
                    "labels": torch.from_numpy(batch.labels[i]),
                    "keypoints": torch.from_numpy(batch.keypoints[i]),
                    "visible": torch.from_numpy(batch.visible[i]),
                }
            b += 1


def parse_data_spec(spec: str) -> tuple[str, str]:
    """A `--data` spec -> ("synthetic", CATEGORY) or ("folder", PATH); the one parser of the flag."""
    kind, _, value = spec.partition(":")
    if kind not in ("synthetic", "folder") or not value:
        raise ValueError(f"--data must be 'synthetic:CATEGORY' or 'folder:PATH', got {spec!r}")
    return kind, value


def make_dataset(spec: str, resolution: int, seed: int = 0, pose: str = "aligned", rank: int = 0, world_size: int = 1):
    """The dataset a `--data` spec ("synthetic:NAME" or "folder:PATH") names."""
    kind, value = parse_data_spec(spec)
    if kind == "synthetic":
        return SyntheticDataset(value, resolution, seed=seed, pose=pose, rank=rank, world_size=world_size)
    return ImageFolderDataset(value, resolution)


def infinite_loader(dataset, batch_size: int, num_workers: int = 0, seed: int = 0):
    """Batches forever: an iterable dataset streams; a folder is reshuffled every epoch."""
    if isinstance(dataset, IterableDataset):
        yield from DataLoader(dataset, batch_size=batch_size, num_workers=num_workers)
        return
    if len(dataset) < batch_size:
        raise ValueError(f"the dataset has {len(dataset)} images, fewer than the batch size {batch_size}")
    generator = torch.Generator().manual_seed(seed)
    while True:
        yield from DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True, num_workers=num_workers,
                              generator=generator)
