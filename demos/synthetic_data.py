"""Tab: the synthetic categories with their exact ground truth (labels, canonical coordinates).

Runs alone with `python -m demos.synthetic_data`.
"""

from __future__ import annotations

import gradio as gr
import numpy as np

import synthetic

from . import display, events

MAX_SEED = 2**31 - 1


def coordinate_map(coords: np.ndarray) -> np.ndarray:
    """Canonical coordinates [H, W, 2] in [-1, 1] (NaN = background) -> RGB uint8 (x red, y green)."""
    rgb = np.zeros((*coords.shape[:2], 3), np.uint8)
    fg = ~np.isnan(coords[..., 0])
    rgb[fg, :2] = np.round((coords[fg] + 1) * 127.5).astype(np.uint8)
    rgb[fg, 2] = 128
    return rgb


def render_example(category: str, structure_seed: float, texture_seed: float, resolution: float = 128,
                   pose: str = "aligned"):
    """Render one image; returns (image, label overlay, canonical coordinate map)."""
    if category not in synthetic.CATEGORIES:
        raise gr.Error(f"Unknown category {category!r}; choose one of {', '.join(synthetic.CATEGORIES)}.")
    if pose not in synthetic.POSES:
        raise gr.Error(f"Unknown pose range {pose!r}; choose one of {', '.join(synthetic.POSES)}.")
    for name, value in (("structure seed", structure_seed), ("texture seed", texture_seed)):
        if value is None or not float(value).is_integer() or not 0 <= value <= MAX_SEED:
            raise gr.Error(f"The {name} must be a whole number between 0 and {MAX_SEED}.")
    if resolution is None or not 32 <= int(resolution) <= 512:
        raise gr.Error("The resolution must be between 32 and 512 pixels.")
    structure = synthetic.sample_structures(category, 1, int(structure_seed), pose)
    texture = synthetic.sample_textures(category, 1, int(texture_seed))
    batch = synthetic.render(category, structure, texture, int(resolution))
    cat = synthetic.category(category)
    colors = synthetic.colorize(batch.labels[0], cat.num_classes)
    overlay = np.where(batch.labels[0, ..., None] > 0, (0.45 * batch.image[0] + 0.55 * colors).astype(np.uint8),
                       batch.image[0])
    return batch.image[0], overlay, coordinate_map(batch.coords[0])


def create_demo() -> None:
    gr.Markdown(
        "Procedural categories whose correspondence is known exactly: every pixel knows its part "
        "and its canonical coordinate. The structure seed sets pose and shape, the texture seed "
        "colours; the same structure seed always gives the same labels and coordinates."
    )
    with gr.Row():
        category = gr.Dropdown(list(synthetic.CATEGORIES), value=synthetic.CATEGORIES[0], label="Category")
        structure_seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Structure seed")
        texture_seed = gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Texture seed")
        resolution = gr.Slider(32, 512, value=128, step=16, label="Resolution")
        pose = gr.Radio(list(synthetic.POSES), value="aligned", label="Pose range")
    with gr.Row():
        image = gr.Image(label="Image", format="png", height=display.HEIGHT, elem_classes="pixelated",
                         elem_id="synthetic-image")
        overlay = gr.Image(label="Part labels", format="png", height=display.HEIGHT, elem_classes="pixelated")
        coords = gr.Image(label="Canonical coordinates (x red, y green)", format="png", height=display.HEIGHT,
                          elem_classes="pixelated")
    inputs = [category, structure_seed, texture_seed, resolution, pose]
    gr.Examples([["faces", 0, 1, 128, "aligned"], ["cats", 3, 7, 128, "aligned"], ["faces", 5, 5, 128, "wide"]], inputs)
    gr.on([c.change for c in inputs], render_example, inputs, [image, overlay, coords], api_name="synthetic")
    events.on_open(True, render_example, inputs, [image, overlay, coords])  # no model: always an example on open


if __name__ == "__main__":
    with gr.Blocks() as demo:
        create_demo()
    demo.launch()
