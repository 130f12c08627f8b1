"""Placeholder tabs for the pipelines that have not landed yet."""

from __future__ import annotations

import gradio as gr

COMING = {
    "Structure & texture": "CoordGAN: independent structure and texture sliders and the correspondence map. Coming with the CoordGAN issue.",
    "Label propagation": "CoordGAN label propagation and GANgealing edit propagation on the average congealed image. Coming with the CoordGAN and GANgealing issues.",
    "Exemplar translation": "CoCosNet: a label map or edge map rendered in the style of an exemplar photo. Coming with the CoCosNet issue.",
}


def create_demo(tab: str) -> None:
    gr.Markdown(COMING[tab])
