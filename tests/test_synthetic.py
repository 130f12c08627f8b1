"""The synthetic categories: API, exact ground truth and the structure/texture invariants."""

import json
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import synthetic
from synthetic.__main__ import main as cli

renderer = sys.modules["synthetic.renderer"]
SEEDS = [3, 101, 2024]  # seeds no other test, example or doc uses


def no_noise(name, texture):
    texture = texture.copy()
    texture[:, synthetic.texture_names(synthetic.category(name)).index("noise_sigma")] = 0
    return texture


def test_categories_and_metadata():
    assert "faces" in synthetic.CATEGORIES and len(synthetic.CATEGORIES) >= 2
    faces = synthetic.category("faces")
    assert faces.class_names[0] == "background" and len(faces.class_names) - 1 >= 7
    assert len(faces.keypoint_names) >= 10
    for name in synthetic.CATEGORIES:
        cat = synthetic.category(name)
        assert cat.class_names[0] == "background"
        perm = np.asarray(cat.flip_permutation)
        assert sorted(perm) == list(range(cat.num_keypoints))
        assert (perm[perm] == np.arange(cat.num_keypoints)).all()  # an involution
        pairs = 0
        for i, k in enumerate(cat.keypoint_names):
            other = cat.keypoint_names[perm[i]]
            if k.startswith("left_"):
                assert other == "right_" + k[5:]
                pairs += 1
            else:
                assert other == k or k.startswith("right_")
        assert pairs >= 2
    with pytest.raises(ValueError, match="unknown category"):
        synthetic.category("dogs")


def test_categories_differ_in_topology():
    """Across the top of the head a face is one run of foreground (hair), a cat two (its ears)."""

    def runs(name, y):
        x = np.linspace(-1, 1, 801, dtype=np.float32)
        fg = synthetic.category(name).labels_at(np.stack([x, np.full_like(x, y)], -1)) > 0
        return int(fg[0]) + int((fg[1:] & ~fg[:-1]).sum())

    assert runs("faces", -0.75) == 1
    assert runs("cats", -0.75) == 2


@pytest.mark.parametrize("name", synthetic.CATEGORIES)
@pytest.mark.parametrize("resolution", [32, 64])
def test_batch_fields(name, resolution):
    cat = synthetic.category(name)
    b = synthetic.sample(name, 5, resolution, seed=SEEDS[0])
    n, r, k = 5, resolution, cat.num_keypoints
    assert b.image.shape == (n, r, r, 3) and b.image.dtype == np.uint8
    assert b.labels.shape == (n, r, r) and b.labels.dtype == np.int64
    assert b.coords.shape == (n, r, r, 2) and b.coords.dtype == np.float32
    assert b.keypoints.shape == (n, k, 2) and b.keypoints.dtype == np.float32
    assert b.visible.shape == (n, k) and b.visible.dtype == bool
    assert b.structure.dtype == np.float32 and b.texture.dtype == np.float32
    assert b.structure.shape == (n, len(synthetic.structure_names(cat)))
    assert b.texture.shape == (n, len(synthetic.texture_names(cat)))
    assert 0 <= b.labels.min() and b.labels.max() < cat.num_classes
    background = b.labels == 0
    assert np.isnan(b.coords[background]).all()
    assert np.isfinite(b.coords[~background]).all()
    assert np.abs(b.coords[~background]).max() <= 1
    assert (~background).mean() > 0.2  # the object fills a good part of the frame


@pytest.mark.parametrize("name", synthetic.CATEGORIES)
@pytest.mark.parametrize("pose", ["aligned", "wide"])
def test_labels_are_the_template_at_the_canonical_coordinate(name, pose):
    cat = synthetic.category(name)
    b = synthetic.sample(name, 6, 48, seed=SEEDS[1], pose=pose)
    fg = b.labels > 0
    assert (cat.labels_at(b.coords[fg]) == b.labels[fg]).all()
    # every part class appears somewhere in a handful of images
    assert set(np.unique(b.labels)) == set(range(cat.num_classes))


@pytest.mark.parametrize("name", synthetic.CATEGORIES)
@pytest.mark.parametrize("seed", SEEDS)
def test_texture_changes_pixels_only(name, seed):
    s = synthetic.sample_structures(name, 4, seed, pose="wide")
    t1, t2 = synthetic.sample_textures(name, 4, seed + 1), synthetic.sample_textures(name, 4, seed + 2)
    a, b = synthetic.render(name, s, t1, 48), synthetic.render(name, s, t2, 48)
    assert np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.coords, b.coords, equal_nan=True)
    assert np.array_equal(a.keypoints, b.keypoints)
    assert np.array_equal(a.visible, b.visible)
    diff = np.abs(a.image.astype(int) - b.image.astype(int)).mean(axis=(1, 2, 3))
    assert (diff > 15).all(), diff


@pytest.mark.parametrize("name", synthetic.CATEGORIES)
def test_structure_changes_geometry(name):
    s1, s2 = synthetic.sample_structures(name, 3, SEEDS[0]), synthetic.sample_structures(name, 3, SEEDS[1])
    t = synthetic.sample_textures(name, 3, SEEDS[2])
    a, b = synthetic.render(name, s1, t, 48), synthetic.render(name, s2, t, 48)
    assert ((a.labels != b.labels).mean(axis=(1, 2)) > 0.02).all()
    assert (np.abs(a.keypoints - b.keypoints).max(axis=(1, 2)) > 0.5).all()


def test_same_seed_same_bytes_and_prefix():
    a = synthetic.sample("faces", 6, 40, seed=SEEDS[2], pose="wide")
    b = synthetic.sample("faces", 6, 40, seed=SEEDS[2], pose="wide")
    assert a.image.tobytes() == b.image.tobytes()
    assert np.array_equal(a.coords, b.coords, equal_nan=True)
    c = synthetic.sample("faces", 3, 40, seed=SEEDS[2], pose="wide")  # a prefix of the longer draw
    assert c.image.tobytes() == a.image[:3].tobytes()
    d = synthetic.sample("faces", 6, 40, seed=SEEDS[2] + 1, pose="wide")
    assert not np.array_equal(a.image, d.image)
    e = synthetic.sample("faces", 2, 40, seed=(SEEDS[2], 1))  # sequence seeds for streams
    assert not np.array_equal(e.image, a.image[:2])


def bilinear(coords, x, y):
    """Sample a [H, W, 2] map at continuous pixel position (x, y) (pixel centres at +0.5)."""
    gx, gy = x - 0.5, y - 0.5
    j, i = int(np.floor(gx)), int(np.floor(gy))
    fx, fy = gx - j, gy - i
    patch = coords[i : i + 2, j : j + 2]
    w = np.array([[(1 - fy) * (1 - fx), (1 - fy) * fx], [fy * (1 - fx), fy * fx]])[..., None]
    return (patch * w).sum((0, 1))


@pytest.mark.parametrize("name", synthetic.CATEGORIES)
@pytest.mark.parametrize("pose", ["aligned", "wide"])
def test_keypoints_sit_at_their_canonical_coordinate(name, pose):
    """The canonical coordinate interpolated at a keypoint's pixel position is its template point."""
    cat = synthetic.category(name)
    r = 128
    b = synthetic.sample(name, 6, r, seed=SEEDS[0], pose=pose)
    checked = 0
    for n in range(len(b)):
        mirrored = b.structure[n, 5] >= 0.5
        for k in range(cat.num_keypoints):
            x, y = b.keypoints[n, k]
            if not (1 < x < r - 1 and 1 < y < r - 1):
                assert not b.visible[n, k] or x < 1 or y < 1 or x >= r - 1 or y >= r - 1
                continue
            assert b.visible[n, k]
            value = bilinear(b.coords[n], x, y)
            if np.isnan(value).any():
                continue  # on the object outline: a neighbour is background
            expected = np.array(cat.keypoints[k])
            if mirrored:  # coords of a mirrored image are reflected, like its names
                expected = np.array(cat.keypoints[cat.flip_permutation[k]]) * [-1, 1]
            pixel = 2 / r / np.exp(b.structure[n, 1])  # one pixel in canonical units
            assert np.abs(value - expected).max() < 0.3 * pixel, (name, k, value, expected)
            checked += 1
    assert checked >= 6 * cat.num_keypoints // 2


@pytest.mark.parametrize("name", synthetic.CATEGORIES)
def test_visibility_is_inside_the_frame(name):
    b = synthetic.sample(name, 16, 32, seed=SEEDS[1], pose="wide")
    inside = (b.keypoints >= 0).all(-1) & (b.keypoints < 32).all(-1)
    assert np.array_equal(b.visible, inside)
    assert not b.visible.all()  # wide poses push some keypoints out of the frame


@pytest.mark.parametrize("name", synthetic.CATEGORIES)
def test_mirror_is_an_exact_flip_with_left_right_swapped(name):
    cat = synthetic.category(name)
    s = synthetic.sample_structures(name, 3, SEEDS[2], pose="wide")
    s[:, 5] = 0
    m = s.copy()
    m[:, 5] = 1
    t = synthetic.sample_textures(name, 3, SEEDS[0])
    a, b = synthetic.render(name, s, t, 40), synthetic.render(name, m, t, 40)
    assert np.array_equal(b.image, a.image[:, :, ::-1])
    assert np.array_equal(b.labels, np.asarray(cat.class_flip_permutation)[a.labels[:, :, ::-1]])
    assert np.array_equal(b.coords, a.coords[:, :, ::-1] * np.float32([-1, 1]), equal_nan=True)
    expected = a.keypoints[:, list(cat.flip_permutation)].copy()
    expected[..., 0] = 40 - expected[..., 0]
    np.testing.assert_allclose(b.keypoints, expected, atol=1e-4)


@pytest.mark.parametrize("name", synthetic.CATEGORIES)
def test_warp_is_a_diffeomorphism_at_extreme_shapes(name):
    """The image-to-canonical map folds nowhere: positive Jacobian determinant on a fine grid."""
    cat = synthetic.category(name)
    rng = np.random.default_rng(SEEDS[0])
    s = synthetic.sample_structures(name, 16, SEEDS[1], pose="wide")
    s[:, 6:] = rng.choice([-1.0, 1.0], size=s[:, 6:].shape)  # every shape mode at an extreme
    s = torch.from_numpy(s).double()
    g = torch.linspace(-0.99, 0.99, 120, dtype=torch.float64)
    py, px = torch.meshgrid(g, g, indexing="ij")
    px, py = px.reshape(1, -1).expand(16, -1), py.reshape(1, -1).expand(16, -1)
    h = 1e-5
    ax, ay = renderer._pixel_to_canonical(cat, px + h, py, s)
    bx, by = renderer._pixel_to_canonical(cat, px - h, py, s)
    cx, cy = renderer._pixel_to_canonical(cat, px, py + h, s)
    dx, dy = renderer._pixel_to_canonical(cat, px, py - h, s)
    det = ((ax - bx) * (cy - dy) - (cx - dx) * (ay - by)) / (4 * h * h)
    # only where the pixel lands near the template (elsewhere the map is sent to background)
    ux, uy = renderer._pixel_to_canonical(cat, px, py, s)
    near = (ux.abs() < 1.2) & (uy.abs() < 1.2)
    assert near.sum() > 1000 and (det[near] > 0).all()


@pytest.mark.parametrize("name", synthetic.CATEGORIES)
def test_images_are_anti_aliased(name):
    """One sample per pixel comes close to a 4x4 supersampled render; point sampling does not."""
    s = synthetic.sample_structures(name, 6, SEEDS[2])
    t = no_noise(name, synthetic.sample_textures(name, 6, SEEDS[1]))
    image = synthetic.render(name, s, t, 48).image.astype(float)
    big = synthetic.render(name, s, t, 192).image.astype(float)
    supersampled = big.reshape(6, 48, 4, 48, 4, 3).mean((2, 4))
    point_sampled = big[:, 2::4, 2::4]
    aa_error = np.abs(image - supersampled).mean()
    point_error = np.abs(point_sampled - supersampled).mean()
    assert aa_error < 0.5 * point_error, (aa_error, point_error)


def test_render_rejects_bad_input():
    s = synthetic.sample_structures("faces", 2)
    t = synthetic.sample_textures("faces", 2)
    with pytest.raises(ValueError, match="structure must have shape"):
        synthetic.render("faces", s[:, :5], t)
    with pytest.raises(ValueError, match="texture must have shape"):
        synthetic.render("faces", s, synthetic.sample_textures("cats", 2))
    with pytest.raises(ValueError, match="differ in length"):
        synthetic.render("faces", s, t[:1])
    with pytest.raises(ValueError, match="resolution"):
        synthetic.render("faces", s, t, resolution=4)
    with pytest.raises(ValueError, match="finite"):
        synthetic.render("faces", s * np.nan, t)
    with pytest.raises(ValueError, match="pose range"):
        synthetic.sample("faces", 2, pose="upside-down")
    with pytest.raises(ValueError, match="unknown category"):
        synthetic.sample("dogs", 2)
    assert len(synthetic.sample("faces", 0)) == 0


def test_label_helpers():
    labels = np.array([[0, 0, 1], [0, 2, 1], [2, 2, 1]])
    masks = synthetic.one_hot(labels, 4)
    assert masks.shape == (4, 3, 3) and masks.dtype == np.float32
    assert np.array_equal(masks.argmax(0), labels) and masks.sum(0).min() == 1 and masks[3].sum() == 0
    batch_masks = synthetic.one_hot(np.stack([labels, labels]), 3)
    assert batch_masks.shape == (2, 3, 3, 3)
    with pytest.raises(ValueError, match="must lie in"):
        synthetic.one_hot(labels, 2)
    edges = synthetic.edge_map(labels)
    assert edges.dtype == bool
    assert np.array_equal(edges, [[False, True, False], [True, True, False], [False, True, False]])
    assert not synthetic.edge_map(np.zeros((5, 5), int)).any()
    pal = synthetic.palette(32)
    assert pal.shape == (32, 3) and pal.dtype == np.uint8 and (pal[0] == 0).all()
    assert len({tuple(c) for c in pal}) == 32  # every class its own colour
    assert np.array_equal(synthetic.palette(8), pal[:8])  # stable across sizes
    assert np.array_equal(synthetic.colorize(labels), pal[labels])


@pytest.mark.parametrize("name", synthetic.CATEGORIES)
def test_edge_map_of_a_sample_follows_part_boundaries(name):
    b = synthetic.sample(name, 2, 48, seed=SEEDS[0])
    edges = synthetic.edge_map(b.labels)
    assert 0.01 < edges.mean() < 0.3


def test_export_writes_the_dataset_layout(tmp_path):
    out = tmp_path / "faces"
    assert cli(["export", "--category", "faces", "--n", "7", "--resolution", "40", "--out", str(out),
                "--seed", "5"]) == 0
    expected = synthetic.sample("faces", 7, 40, seed=5)
    files = sorted(p.name for p in (out / "images").iterdir())
    assert files == [f"{i:05d}.png" for i in range(7)]
    meta = json.loads((out / "keypoints.json").read_text())
    assert meta["keypoint_names"] == list(synthetic.category("faces").keypoint_names)
    assert meta["class_names"][0] == "background"
    for i, file in enumerate(files):
        assert np.array_equal(np.asarray(Image.open(out / "images" / file)), expected.image[i])
        label_png = Image.open(out / "labels" / file)
        assert label_png.mode == "L"
        assert np.array_equal(np.asarray(label_png), expected.labels[i])
        np.testing.assert_allclose(meta["images"][file]["keypoints"], expected.keypoints[i], atol=1e-3)
        assert meta["images"][file]["visible"] == expected.visible[i].tolist()
    # the stored vectors re-render the exact ground truth
    again = synthetic.render("faces", np.load(out / "structure.npy"), np.load(out / "texture.npy"), 40)
    assert np.array_equal(again.coords, expected.coords, equal_nan=True)


def test_grid_rows_share_structure_columns_share_texture(tmp_path):
    from synthetic.export import grid

    g = grid("cats", rows=2, cols=3, resolution=32, seed=SEEDS[0])
    assert g.shape == (64, 96, 3)
    tiles = g.reshape(2, 32, 3, 32, 3).transpose(0, 2, 1, 3, 4)
    assert not np.array_equal(tiles[0, 0], tiles[0, 1]) and not np.array_equal(tiles[0, 0], tiles[1, 0])
    assert cli(["grid", "--category", "faces", "--rows", "1", "--cols", "2", "--resolution", "32", "--out",
                str(tmp_path / "g.png")]) == 0
    assert Image.open(tmp_path / "g.png").size == (64, 32)
