"""train/data.py: synthetic streams and image folders, as the training scripts read them."""

import itertools

import numpy as np
import pytest
import torch
from PIL import Image

import synthetic
from synthetic.export import export
from train.data import (
    ImageFolderDataset,
    SyntheticDataset,
    image_to_tensor,
    infinite_loader,
    make_dataset,
    tensor_to_image,
)


def take(dataset, n):
    return list(itertools.islice(iter(dataset), n))


def test_synthetic_stream_is_seeded_and_split_by_rank():
    a = take(SyntheticDataset("faces", 32, seed=7, block=4), 6)  # crosses a block boundary
    b = take(SyntheticDataset("faces", 32, seed=7, block=4), 6)
    assert all(torch.equal(x["image"], y["image"]) for x, y in zip(a, b))
    assert a[0]["image"].shape == (3, 32, 32) and a[0]["image"].dtype == torch.float32
    assert -1 <= a[0]["image"].min() and a[0]["image"].max() <= 1
    assert a[0]["labels"].shape == (32, 32) and a[0]["keypoints"].shape[1] == 2
    images = [x["image"] for x in a]
    assert all(not torch.equal(images[i], images[j]) for i in range(6) for j in range(i))
    other_rank = take(SyntheticDataset("faces", 32, seed=7, block=4, rank=1, world_size=2), 6)
    other_seed = take(SyntheticDataset("faces", 32, seed=8, block=4), 6)
    for other in (other_rank, other_seed):
        assert all(not torch.equal(x["image"], y["image"]) for x in a for y in other)


def test_synthetic_stream_matches_the_renderer():
    item = take(SyntheticDataset("cats", 24, seed=3, block=2), 1)[0]
    batch = synthetic.sample("cats", 2, 24, seed=(3, 0, 0))
    assert np.array_equal(tensor_to_image(item["image"]), batch.image[0])
    assert np.array_equal(item["labels"].numpy(), batch.labels[0])


def test_dataloader_workers_see_different_images():
    loader = torch.utils.data.DataLoader(SyntheticDataset("faces", 16, block=2), batch_size=2, num_workers=2)
    first, second = itertools.islice(iter(loader), 2)  # one batch from each worker
    assert not torch.equal(first["image"], second["image"])


def test_image_tensor_round_trip():
    image = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    t = image_to_tensor(image)
    assert t.shape == (2, 3, 5, 7)
    assert np.array_equal(tensor_to_image(t), image)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("faces")
    export("faces", 6, 64, root, seed=11)
    return root


def test_folder_reads_the_exported_layout(exported):
    ds = ImageFolderDataset(exported, 64)
    expected = synthetic.sample("faces", 6, 64, seed=11)
    assert len(ds) == 6 and ds.class_names[0] == "background"
    item = ds[2]
    assert np.array_equal(tensor_to_image(item["image"]), expected.image[2])
    assert np.array_equal(item["labels"].numpy(), expected.labels[2])
    np.testing.assert_allclose(item["keypoints"].numpy(), expected.keypoints[2], atol=1e-3)
    assert item["visible"].tolist() == expected.visible[2].tolist()


def test_folder_resizes_labels_and_keypoints_together(exported):
    ds = ImageFolderDataset(exported, 32)
    full = synthetic.sample("faces", 6, 64, seed=11)
    item = ds[1]
    assert item["image"].shape == (3, 32, 32) and item["labels"].shape == (32, 32)
    np.testing.assert_allclose(item["keypoints"].numpy(), full.keypoints[1] / 2, atol=1e-3)
    assert set(item["labels"].unique().tolist()) <= set(range(synthetic.category("faces").num_classes))


def test_folder_centre_crops_non_square_images(tmp_path):
    image = np.zeros((40, 80, 3), np.uint8)
    image[:, 20:60] = 255  # the centre square is white, the sides black
    Image.fromarray(image).save(tmp_path / "wide.png")
    item = ImageFolderDataset(tmp_path, 20)[0]
    assert item["image"].shape == (3, 20, 20)
    assert item["image"].mean() > 0.95 and item["image"].min() > 0.5  # only the white centre survives
    assert "labels" not in item


def test_folder_skips_unreadable_files_with_a_counted_warning(tmp_path):
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(tmp_path / f"{i}.png")
    (tmp_path / "notes.png").write_text("not an image")
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    (tmp_path / "readme.txt").write_text("ignored: not an image extension")
    with pytest.warns(UserWarning, match="skipped 2 of 5 files"):
        ds = ImageFolderDataset(tmp_path, 8)
    assert len(ds) == 3


def test_folder_skips_files_that_fail_to_decode(tmp_path):
    Image.fromarray(np.full((16, 16, 3), 200, np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(np.full((16, 16, 3), 100, np.uint8)).save(tmp_path / "b.png")
    data = (tmp_path / "a.png").read_bytes()
    (tmp_path / "a.png").write_bytes(data[: len(data) // 2])  # header fine, pixels truncated
    ds = ImageFolderDataset(tmp_path, 16)
    with pytest.warns(UserWarning, match="skipping unreadable image"):
        item = ds[0]
    assert abs(tensor_to_image(item["image"]).mean() - 100) < 1  # b.png took a.png's place


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        ImageFolderDataset(tmp_path / "missing")
    with pytest.raises(ValueError, match="no readable images"):
        ImageFolderDataset(tmp_path)
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "images" / "x.png")
    with pytest.raises(ValueError, match="no label map"):
        ImageFolderDataset(tmp_path)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "labels" / "x.png")
    with pytest.raises(ValueError, match="class ids"):
        ImageFolderDataset(tmp_path, 8)[0]


def test_make_dataset_and_loader(exported):
    assert isinstance(make_dataset("synthetic:cats", 16), SyntheticDataset)
    folder = make_dataset(f"folder:{exported}", 16)
    assert isinstance(folder, ImageFolderDataset)
    for bad in ("faces", "synthetic:", "folder:", "hub:x/y"):
        with pytest.raises(ValueError, match="--data must be"):
            make_dataset(bad, 16)
    with pytest.raises(ValueError, match="unknown synthetic category"):
        make_dataset("synthetic:dogs", 16)
    batches = list(itertools.islice(infinite_loader(folder, 4), 3))  # 6 images: reshuffles past an epoch
    assert all(b["image"].shape == (4, 3, 16, 16) for b in batches)
    stream = next(infinite_loader(make_dataset("synthetic:faces", 16), 3))
    assert stream["image"].shape == (3, 3, 16, 16) and stream["labels"].shape == (3, 16, 16)
    with pytest.raises(ValueError, match="fewer than the batch size"):
        next(infinite_loader(folder, 64))
