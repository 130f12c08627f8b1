"""app.py: builds offline, honours --host/--port/GRADIO_SERVER_PORT, answers client API calls."""

import numpy as np
import gradio as gr
import pytest

import app
from demos.synthetic_data import coordinate_map, render_example


def test_parse_args_honours_flags_and_environment(monkeypatch):
    monkeypatch.delenv("GRADIO_SERVER_PORT", raising=False)
    monkeypatch.delenv("GRADIO_SERVER_NAME", raising=False)
    args = app.parse_args([])
    assert (args.host, args.port) == ("127.0.0.1", 7860)
    monkeypatch.setenv("GRADIO_SERVER_PORT", "9123")
    monkeypatch.setenv("GRADIO_SERVER_NAME", "0.0.0.0")
    args = app.parse_args([])
    assert (args.host, args.port) == ("0.0.0.0", 9123)
    args = app.parse_args(["--host", "localhost", "--port", "8001"])
    assert (args.host, args.port) == ("localhost", 8001)


def test_app_has_one_tab_per_method_view():
    blocks = app.build_app()
    labels = [b.label for b in blocks.blocks.values() if isinstance(b, gr.Tab)]
    assert labels == ["Structure & texture", "Label propagation", "Congealing & edits", "Exemplar translation",
                      "Appearance transfer", "Compare", "Synthetic data"]


def test_render_example_outputs_and_errors():
    image, overlay, coords = render_example("faces", 4, 9, 64)
    assert image.shape == overlay.shape == coords.shape == (64, 64, 3)
    assert (coords[0, 0] == 0).all() and coords.max() > 100  # background black, object coloured
    again, _, coords2 = render_example("faces", 4, 10, 64)
    assert np.array_equal(coords, coords2) and not np.array_equal(image, again)
    for bad in [("dogs", 0, 0), ("faces", -1, 0), ("faces", 0.5, 0), ("faces", 0, None)]:
        with pytest.raises(gr.Error):
            render_example(*bad)
    with pytest.raises(gr.Error, match="resolution"):
        render_example("faces", 0, 0, 5000)


def test_coordinate_map_colours_foreground_only():
    coords = np.full((2, 2, 2), np.nan, np.float32)
    coords[0, 0] = [-1, 1]
    rgb = coordinate_map(coords)
    assert rgb[0, 0].tolist() == [0, 255, 128] and (rgb[1] == 0).all()


def test_client_api_call(app_server):
    from gradio_client import Client
    from PIL import Image

    client = Client(app_server.url, verbose=False)
    image_path, overlay_path, coords_path = client.predict("cats", 2, 3, 64, "aligned", api_name="/synthetic")
    expected, _, _ = render_example("cats", 2, 3, 64)
    assert np.array_equal(np.asarray(Image.open(image_path).convert("RGB")), expected)
