"""The `/match_points` endpoint: (method, image A, image B, points JSON[, exemplar map]) -> JSON with
each point's match in B and a confidence, for every method of the app.

Image A is what the method matches from: CoordGAN's reference, GANgealing's first image, COAT's
content photo, CoCosNet's input map (a label map as an index PNG or in the class colours, or an
edge map); image B is the other image (CoCosNet: the exemplar photo).
"""

from __future__ import annotations

import gradio as gr
import numpy as np

from . import events, inputs, matching, models


def match_points(pipelines: dict, method, image_a, image_b, points, exemplar_map=None) -> dict:
    if method not in matching.METHODS:
        raise gr.Error(f"Unknown method {method!r}: choose one of {', '.join(matching.METHODS)}.")
    pipe = models.require(pipelines.get(method))
    pts = matching.parse_points(points)
    b = inputs.load_rgb(image_b, "image B (the exemplar photo)" if method == "cocosnet" else "image B")
    extra = None
    if method == "cocosnet":
        a = inputs.load_cocosnet_map(pipe, image_a, "image A (the input map)")
        extra = inputs.load_cocosnet_exemplar_map(pipe, exemplar_map)
        size_a = a.shape[:2] if isinstance(a, np.ndarray) else (a.height, a.width)  # a label map, or an edge image
    else:
        a = inputs.load_rgb(image_a, "image A")
        size_a = (a.height, a.width)
    out = matching.run(pipe, a, b, pts, **({} if extra is None else {'exemplar_map': extra}))
    return matching.as_json(method, out, size_a, (b.height, b.width))


def create(pipelines: dict) -> None:
    """The endpoint's components, hidden: the API is for scripts (each tab has its own clicks)."""
    with gr.Group(visible=False):
        method = gr.Textbox("coat", label=f"method: {', '.join(matching.METHODS)}")
        image_a = inputs.ImageInput(label="image A")
        image_b = inputs.ImageInput(label="image B")
        points = gr.Textbox(label="points (JSON [[x, y], ...], pixel indices of image A)")
        exemplar_map = inputs.ImageInput(label="exemplar map (CoCosNet models that need it)")
        result = gr.JSON(label="matches")
        button = gr.Button("Match")

    @events.handler
    def on_match(method, image_a, image_b, points, exemplar_map=None):
        return match_points(pipelines, method, image_a, image_b, points, exemplar_map)

    button.click(on_match, [method, image_a, image_b, points, exemplar_map], result, api_name="match_points")
