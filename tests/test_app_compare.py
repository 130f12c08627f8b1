"""The Compare tab's function and `/compare`: every loaded method on one pair, the exact errors on a
synthetic pair; and display.py's enlargement, whose clicks map back to model pixels exactly."""

import numpy as np
import pytest
from PIL import Image

from demos import compare, display, examples


def test_enlarged_images_map_clicks_back_to_model_pixels():
    image = Image.fromarray(np.arange(64 * 48 * 3, dtype=np.uint8).reshape(48, 64, 3))
    shown = display.enlarged(image)
    k = display.factor(image.size)
    assert k == 4 and shown.size == (256, 192)
    for x, y in ((0, 0), (63, 47), (17, 30)):
        for dx, dy in ((0, 0), (k - 1, k - 1), (1, 2)):  # every displayed pixel of model pixel (x, y)
            index = (x * k + dx, y * k + dy)
            assert display.model_pixel(index, image.size) == (x, y)
            assert shown.getpixel(index) == image.getpixel((x, y))
    assert display.enlarged(Image.new("RGB", (300, 20))).size == (300, 20)  # already readable: unchanged


def test_synthetic_pair_points_are_exact_matches():
    pair = compare.synthetic_pair(3)
    a, b = compare.exact_points(pair)
    assert a.shape == b.shape and len(a) > 5
    # the true matches of A's keypoints are B's: the canonical coordinates under them agree (to a pixel's worth)
    ca = pair.coords[0][np.clip(a[:, 1].round().astype(int), 0, 127), np.clip(a[:, 0].round().astype(int), 0, 127)]
    cb = pair.coords[1][np.clip(b[:, 1].round().astype(int), 0, 127), np.clip(b[:, 0].round().astype(int), 0, 127)]
    both = np.isfinite(ca).all(1) & np.isfinite(cb).all(1)
    assert both.sum() > 5 and np.abs(ca - cb)[both].max() < 0.1
    grid = compare.grid_points((64, 32), 4)
    assert grid.shape == (16, 2) and grid[:, 0].max() <= 63 and grid[:, 1].max() <= 31


def test_compare_scores_the_identity_guess_exactly():
    """With no pipelines, only the identity guess answers: its error is |A's point - exact match|."""
    pair = compare.synthetic_pair(5)
    points, truth = compare.exact_points(pair)
    a, b = Image.fromarray(pair.image[0]), Image.fromarray(pair.image[1])
    out = compare.compare({}, a, b, points, truth, pair.labels[0])
    assert {name for name, r in out.items() if "skipped" in r} == set(compare.METHODS)
    error = np.linalg.norm(points - truth, axis=1)
    np.testing.assert_allclose(out["identity"]["error_px"], error, atol=1e-3)
    assert out["identity"]["pck@0.1"] == pytest.approx((error <= 0.1 * 128).mean(), abs=1e-4)


@pytest.fixture(scope="module")
def client(app_server):
    from gradio_client import Client

    return Client(app_server.url, verbose=False)


def test_compare_endpoint_on_a_synthetic_pair(client, app_server):
    """Every loaded method answers on a synthetic pair with its errors against the exact matches, and
    its points are the method's own `match_points`."""
    answer = client.predict(None, None, "", 4, 2, api_name="/compare")
    pair = compare.synthetic_pair(2)
    points, truth = compare.exact_points(pair)
    np.testing.assert_allclose(answer["points_a"], np.round(points, 2), atol=1e-6)
    np.testing.assert_allclose(answer["exact_points_b"], np.round(truth, 2), atol=1e-6)
    for name in compare.METHODS:
        r = answer["methods"][name]
        assert "skipped" not in r, (name, r)
        assert len(r["points"]) == len(points) and len(r["error_px"]) == len(points)
        assert 0 <= r["pck@0.05"] <= r["pck@0.1"] <= 1 and r["seconds"] > 0
        source = pair.labels[0] if name == "cocosnet" else Image.fromarray(pair.image[0])
        own = app_server.pipelines[name].match_points(source, Image.fromarray(pair.image[1]), points)
        np.testing.assert_allclose(r["points"], np.round(own.points, 2), atol=0.011)
        np.testing.assert_allclose(r["error_px"], np.linalg.norm(np.asarray(r["points"]) - truth, axis=1), atol=0.02)


def test_compare_endpoint_on_photos_with_a_grid(client):
    from gradio_client import handle_file

    face = handle_file(examples.path("face_0.png"))
    answer = client.predict(face, handle_file(examples.path("face_3.png")), "", 3, -1, api_name="/compare")
    assert len(answer["points_a"]) == 9 and "exact_points_b" not in answer
    assert "skipped" in answer["methods"]["cocosnet"]  # a label map to a photo: not on two photos
    assert len(answer["methods"]["coat"]["points"]) == 9 and "error_px" not in answer["methods"]["coat"]
    given = client.predict(face, face, "[[10, 12]]", 3, -1, api_name="/compare")
    assert len(given["methods"]["coordgan"]["points"]) == 1
