"""/match_points through gradio_client (conftest's app_server: tiny random pipelines loaded
through the app's own flags): the numbers are the packages' `match_points`, hostile input gets
a clear message, and each tab's click view shows the point and its match."""

import json

import numpy as np
import pytest
from PIL import Image

import synthetic
from demos import exemplar_translation, matching


@pytest.fixture(scope="module")
def client(app_server):
    from gradio_client import Client

    return Client(app_server.url, verbose=False)


def file(path):
    from gradio_client import handle_file

    return handle_file(str(path))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    folder = tmp_path_factory.mktemp("pair")
    batch = synthetic.sample("faces", 2, resolution=48, seed=8, pose="medium")
    paths = {"a": folder / "a.png", "b": folder / "b.png", "labels": folder / "labels.png"}
    Image.fromarray(batch.image[0]).save(paths["a"])
    Image.fromarray(batch.image[1]).resize((60, 40)).save(paths["b"])  # another size: points come back in B's pixels
    Image.fromarray(batch.labels[0].astype(np.uint8), mode="L").save(paths["labels"])
    paths["labels_array"] = batch.labels[0]
    return paths


def app_error(client, *args):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(*args, api_name="/match_points")
    return str(info.value)


@pytest.mark.parametrize("method", matching.METHODS)
def test_match_points_returns_the_packages_numbers(client, app_server, pair, method):
    pipe = app_server.pipelines[method]
    points = [[3, 4], [20, 30], [47, 0]]
    a = file(pair["labels"] if method == "cocosnet" else pair["a"])
    out = client.predict(method, a, file(pair["b"]), json.dumps(points), None, api_name="/match_points")
    b = Image.open(pair["b"]).convert("RGB")
    source = pair["labels_array"] if method == "cocosnet" else Image.open(pair["a"]).convert("RGB")
    expected = matching.run(pipe, source, b, np.array(points, float))
    assert out["method"] == method and out["image_a_size"] == [48, 48] and out["image_b_size"] == [60, 40]
    np.testing.assert_allclose(out["points"], expected.points, atol=0.01)
    np.testing.assert_allclose(out["confidence"], expected.confidence, atol=1e-4)
    assert all(0 <= c <= 1 for c in out["confidence"])
    assert all(-0.5 <= x <= 59.5 and -0.5 <= y <= 39.5 for x, y in out["points"])


def test_match_points_hostile_input(client, pair, tmp_path):
    a, b = file(pair["a"]), file(pair["b"])
    assert ("Unknown method 'sift': choose one of coordgan, gangealing, cocosnet, coat"
            in app_error(client, "sift", a, b, "[[1, 2]]", None))
    assert "The points are not valid JSON" in app_error(client, "coat", a, b, "[[1, 2]", None)
    assert "must be a list of [x, y] pairs" in app_error(client, "coat", a, b, '[[1, 2, 3]]', None)
    assert "No points given" in app_error(client, "coat", a, b, "[]", None)
    assert ("points must lie inside image A: 0 <= x <= 47, 0 <= y <= 47"
            in app_error(client, "coat", a, b, "[[48, 2]]", None))
    assert (f"at most {matching.MAX_POINTS} per call"
            in app_error(client, "coat", a, b, json.dumps([[1, 1]] * 1025), None))
    text = tmp_path / "b.png"
    text.write_text("no pixels here")
    assert "is not an image file" in app_error(client, "gangealing", a, file(text), "[[1, 2]]", None)
    # one [x, y] pair and {"points": ...} are accepted too
    single = client.predict("coat", a, b, "[5, 6]", None, api_name="/match_points")
    assert single["points"] == client.predict("coat", a, b, '{"points": [[5, 6]]}', None,
                                              api_name="/match_points")["points"]


def test_click_view_marks_the_point_and_its_match(app_server, pair):
    pipe = app_server.pipelines["coat"]
    a, b = Image.open(pair["a"]).convert("RGB"), Image.open(pair["b"]).convert("RGB")
    view, text = matching.click(pipe, a, b, 10, 30)
    m = matching.run(pipe, a, b, [(10, 30)])
    (mx, my), = m.points
    assert view.shape == (256, 256 + matching.GAP + round(60 * 256 / 40), 3)
    assert f"(10, 30) in A -> ({mx:.1f}, {my:.1f}) in B, confidence {m.confidence[0]:.2f}" == text
    ys, xs = np.nonzero((view[:, :256] == (255, 0, 0)).all(-1))
    assert abs(xs.mean() - (10.5 * 256 / 48 - 0.5)) < 2 and abs(ys.mean() - (30.5 * 256 / 48 - 0.5)) < 2
    right = view[:, 256 + matching.GAP :]
    ys, xs = np.nonzero((right == (0, 160, 255)).all(-1))
    assert abs(xs.mean() - ((mx + 0.5) * 256 / 40 - 0.5)) < 2 and abs(ys.mean() - ((my + 0.5) * 256 / 40 - 0.5)) < 2
    # the heat map tints B where the point could go, most at the peak
    plain = np.asarray(b.resize((right.shape[1], 256), Image.BILINEAR), np.float32)
    tint = np.abs(right.astype(np.float32) - plain).sum(-1)
    peak = np.unravel_index(np.argmax(m.heatmaps[0]), m.heatmaps[0].shape)
    py, px = [int((i + 0.5) * s / n) for i, s, n in zip(peak, (256, right.shape[1]), m.heatmaps[0].shape)]
    assert tint[py, px] > np.median(tint)


def test_cocosnet_click_refuses_points_outside(app_server, pair):
    with pytest.raises(Exception, match=r"outside the 48x48 input"):
        exemplar_translation.correspondence(app_server.pipelines["cocosnet"], str(pair["labels"]),
                                            str(pair["b"]), 60, 3)
