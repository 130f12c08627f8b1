"""The `/models` endpoint: which weights each tab runs (the authors' release, with its resolution,
data and paper, or the bundled toy model, and any fallback note), as JSON: `models.describe_all`."""

from __future__ import annotations

import gradio as gr

from . import models


def create(pipelines: dict) -> None:
    """The endpoint's components, hidden: each tab shows the same in the line at its top."""
    with gr.Group(visible=False):
        answer = gr.JSON(label="models")
        button = gr.Button("Models")
    button.click(lambda: models.describe_all(pipelines), None, answer, api_name="models")
