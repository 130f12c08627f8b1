"""Click-a-point correspondence of every method (`<package>.matching`) on synthetic pairs whose
exact correspondence is known: the renderer's keypoints of image A and image B are the same
canonical points, so B's keypoint is the true match of A's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import synthetic
from coat import matching as coat_matching
from coat.pipeline import COATPipeline
from cocosnet import matching as cocosnet_matching
from cocosnet.pipeline import CoCosNetPipeline
from coordgan import matching as coordgan_matching
from coordgan.pipeline import CoordGANPipeline
from gangealing import matching as gangealing_matching
from gangealing.pipeline import GANgealingPipeline

CHECKPOINTS = Path(__file__).resolve().parent.parent / "checkpoints"
PAIRS = 6


def _pipe(name):
    cls = {"coordgan": CoordGANPipeline, "gangealing": GANgealingPipeline, "cocosnet": CoCosNetPipeline,
           "coat": COATPipeline}[name]
    return cls.from_pretrained(CHECKPOINTS / f"{name}-faces")


MATCH = {
    "coordgan": lambda pipe, a, b, pts: coordgan_matching.match_points(pipe, a.image[0], b.image[0], pts),
    "gangealing": lambda pipe, a, b, pts: gangealing_matching.match_points(pipe, a.image[0], b.image[0], pts),
    "cocosnet": lambda pipe, a, b, pts: cocosnet_matching.match_points(pipe, a.labels[0], b.image[0], pts),
    "coat": lambda pipe, a, b, pts: coat_matching.match_points(pipe, a.image[0], b.image[0], pts),
}


@pytest.fixture(scope="module", params=sorted(MATCH))
def method(request):
    return request.param, _pipe(request.param)


def test_matches_beat_the_identity_guess_on_exact_pairs(method):
    """Mean distance to the true match (B's keypoint) against the identity guess (A's keypoint), with
    a 20 % margin. On these pairs (px, ours vs identity): COAT 2.52 vs 12.12, CoordGAN 6.06 vs 12.12,
    CoCosNet 8.47 vs 12.12 (its matches live on a 16 x 16 grid of 4 px cells), GANgealing 7.79 vs 19.93."""
    name, pipe = method
    pose = "wide" if name == "gangealing" else "aligned"  # the pose range each was trained on
    batch = synthetic.sample("faces", 2 * PAIRS, 64, seed=321,
                             pose=pose)  # images the models never saw (training uses other seeds)
    ours, identity = [], []
    for i in range(PAIRS):
        a, b = batch[2 * i], batch[2 * i + 1]
        vis = a.visible[0] & b.visible[0]
        # the renderer's keypoints are continuous pixels; ours are pixel indices
        pa, pb = a.keypoints[0][vis] - 0.5, b.keypoints[0][vis] - 0.5
        out = MATCH[name](pipe, a, b, pa)
        assert out.points.shape == pa.shape and out.points.dtype == np.float32
        assert out.confidence.shape == (len(pa),) and (out.confidence >= 0).all() and (out.confidence <= 1 + 1e-6).all()
        assert out.heatmaps.shape[0] == len(pa)
        np.testing.assert_allclose(out.heatmaps.sum((1, 2)), 1, atol=1e-4)
        ours.append(np.linalg.norm(out.points - pb, axis=1))
        identity.append(np.linalg.norm(pa - pb, axis=1))
    ours, identity = np.concatenate(ours).mean(), np.concatenate(identity).mean()
    message = f"{name}: {ours:.2f} px from the true match vs {identity:.2f} px for the identity guess"
    assert ours < 0.8 * identity, message


def test_points_outside_image_a_are_refused(method):
    name, pipe = method
    a = synthetic.sample("faces", 2, 64, seed=1)
    with pytest.raises(ValueError, match="points must lie inside"):
        MATCH[name](pipe, a[0], a[1], np.array([[64.0, 3.0]]))
    assert MATCH[name](pipe, a[0], a[1], np.zeros((0, 2))).points.shape == (0, 2)


def test_dense_flows_agree_with_the_point_matches():
    """The `.npy` flow of each method is its point matcher on a pixel (or cell) grid."""
    batch = synthetic.sample("faces", 2, 64, seed=5)
    a, b = batch.image[0], batch.image[1]
    coordgan = _pipe("coordgan")
    flow = coordgan_matching.dense_flow(coordgan, a, b)  # for each pixel of a, where it is in b
    assert flow.shape == (64, 64, 2)
    probe = np.array([[10, 20], [40, 33]])
    np.testing.assert_array_equal(flow[probe[:, 1], probe[:, 0]],
                                  coordgan_matching.match_points(coordgan, a, b, probe).points)
    coat = _pipe("coat")
    flow = coat_matching.dense_flow(coat, a, b)  # for each cell of a, where it is in b
    cells = flow.shape[0]
    centre = (np.array([[3, 7]]) + 0.5) * 64 / cells - 0.5
    np.testing.assert_array_equal(flow[7, 3], coat_matching.match_points(coat, a, b, centre).points[0])
    cocosnet = _pipe("cocosnet")
    flow = cocosnet_matching.dense_flow(cocosnet, batch.labels[0], b)
    f = cocosnet.correspondence_network.feature_resolution
    assert flow.shape == (f, f, 2)
    cells = (np.indices((f, f))[::-1].reshape(2, -1).T[:5] + 0.5) * 64 / f - 0.5
    np.testing.assert_array_equal(flow.reshape(-1, 2)[:5],
                                  cocosnet.match_points(batch.labels[0], b, cells, heatmaps=False).points)
    gangealing = _pipe("gangealing")
    flow = gangealing_matching.dense_flow(gangealing, a, b)
    assert flow.shape == (64, 64, 2) and np.isfinite(flow).mean() > 0.3
    probe = np.argwhere(np.isfinite(flow[..., 0]))[::97][:, ::-1]  # (x, y) pixels of a whose match is known
    gap = np.abs(flow[probe[:, 1], probe[:, 0]] - gangealing_matching.match_points(gangealing, a, b, probe).points)
    pixel = 64 / gangealing.input_size  # the flow reads the nearest model pixel, the matcher interpolates
    assert gap.max() <= pixel and gap.mean() < pixel / 2, (gap.max(), gap.mean())  # swapped: ~7 px


def test_dense_flow_runs_from_the_first_image_to_the_second(method):
    """Every pipeline's convention: dense_flow(a, b) has a's grid (cells or pixels) and holds pixels of b,
    as match_points(a, b, ...) maps a's points into b."""
    name, pipe = method
    batch = synthetic.sample("faces", 2, 64, seed=3)
    a = batch.labels[0] if name == "cocosnet" else batch.image[0]
    b = np.ascontiguousarray(batch.image[1][8:56, 4:36])  # 48 x 32: B's pixels lie in [0, 32) x [0, 48)
    flow = FLOW[name](pipe, a, b)
    rows, cols = flow.shape[:2]
    assert rows == cols  # a is square: its grid is too
    if name in ("coordgan", "gangealing"):
        assert (rows, cols) == (64, 64)
    seen = flow[np.isfinite(flow).all(-1)]
    assert len(seen) and (seen >= -0.5).all() and (seen[:, 0] <= 31.5).all() and (seen[:, 1] <= 47.5).all()


FLOW = {
    "coordgan": coordgan_matching.dense_flow,
    "gangealing": gangealing_matching.dense_flow,
    "cocosnet": cocosnet_matching.dense_flow,
    "coat": coat_matching.dense_flow,
}


def test_every_pipeline_answers_the_same_way(method):
    """#28: match_points / dense_flow are methods of every pipeline (the matching modules' functions),
    `run` is the tensor pass and `preprocess` gives (tensor (B, 3, R, R), [(H, W), ...])."""
    name, pipe = method
    batch = synthetic.sample("faces", 2, 64, seed=9)
    a, b = batch[0], batch[1]
    source = a.labels[0] if name == "cocosnet" else a.image[0]
    points = np.array([[20.0, 30.0], [41.0, 12.0]])
    by_method = pipe.match_points(source, b.image[0], points)
    by_function = MATCH[name](pipe, a, b, points)
    for field in ("points", "confidence", "heatmaps"):
        np.testing.assert_array_equal(getattr(by_method, field), getattr(by_function, field))
    np.testing.assert_array_equal(pipe.dense_flow(source, b.image[0]), FLOW[name](pipe, source, b.image[0]))
    assert callable(pipe.run)
    x, sizes = pipe.preprocess([batch.image[0], batch.image[1][:40]])
    assert x.ndim == 4 and x.shape[:2] == (2, 3) and sizes == [(64, 64), (40, 64)]
    assert x.min() >= -1 and x.max() <= 1
