"""Tab: CoordGAN structure & texture. Two seeds, interpolation sliders, truncation, the
correspondence map, and a grid whose rows share structure and columns share texture (Fig. 1).
Clicking the image shows the same canonical point in the second structure seed's image.

Runs alone with `python -m demos.structure_texture [PIPELINE_DIR]`.
"""

from __future__ import annotations

import gradio as gr
import numpy as np

from coordgan import matching as coordgan_matching

from . import display, events, inputs, matching, models

MAX_GRID = 6


def model_summary(pipe) -> str:
    """One line on the loaded model: image sizes, the correspondence map's size, the encoder."""
    if not pipe:
        return ""
    g = pipe.generator
    sizes = " or ".join(f"{r} px" for r in reversed(g.resolutions))
    official = " (the authors' architecture)" if g.config.coordinate_grid == "linspace" else ""
    encoder = "an encoder for real images" if pipe.encoder is not None else "no encoder: real images cannot be encoded"
    r = g.config.coordinate_resolution
    return f"Model{official}: {sizes} images, a {r}x{r} correspondence map, {encoder}."


def image_size(pipe, resolution):
    """The requested image size, one of the generator's stages (None: its full resolution)."""
    if resolution in (None, ""):
        return None
    sizes = pipe.generator.resolutions
    try:
        value = int(resolution)
    except (TypeError, ValueError):
        value = None
    if value not in sizes:
        raise gr.Error(f"The image size must be one of {', '.join(map(str, sizes))} px for this model, got "
                       f"{resolution!r}.")
    return value


def generate(pipe, structure_seed, texture_seed, structure_seed_2=None, texture_seed_2=None, structure_mix=0.0,
             texture_mix=0.0, truncation=1.0, resolution=None):
    """-> the pipeline's GenerateOutput for the tab's settings (checked; resolution None: the model's own)."""
    pipe = models.require(pipe)
    return pipe.generate(
        structure_seed=inputs.seed(structure_seed, "structure seed"),
        texture_seed=inputs.seed(texture_seed, "texture seed"),
        structure_seed_2=None if structure_seed_2 is None else inputs.seed(structure_seed_2, "second structure seed"),
        texture_seed_2=None if texture_seed_2 is None else inputs.seed(texture_seed_2, "second texture seed"),
        structure_mix=inputs.fraction(structure_mix, "structure interpolation"),
        texture_mix=inputs.fraction(texture_mix, "texture interpolation"),
        truncation=inputs.fraction(truncation, "truncation", 0.0, 1.0),
        resolution=image_size(pipe, resolution),
    )


def match_click(pipe, index, settings: dict):
    """A click at `index` on the enlarged image of `settings` (None: the image's centre) -> the same
    canonical point in the image of the second structure seed (first texture seed): (match view with
    the heat map, the numbers). Both correspondence maps come from the generator, no encoder."""
    out_a = generate(pipe, **settings)
    out_b = generate(pipe, settings["structure_seed_2"], settings["texture_seed"], truncation=settings["truncation"],
                     resolution=settings["resolution"])
    a, b = out_a.images[0], out_b.images[0]
    x, y = display.model_pixel(index, a.size) if index is not None else (a.width // 2, a.height // 2)
    m = coordgan_matching.match_maps(out_a.correspondence_maps[0], out_b.correspondence_maps[0], [(x, y)],
                                     (a.height, a.width), (b.height, b.width), b.width)
    (mx, my), c = m.points[0], float(m.confidence[0])
    view = matching.match_view(a, (x, y), b, (mx, my), m.heatmaps[0])
    return view, f"({x}, {y}) in the image -> ({mx:.1f}, {my:.1f}) in the second structure's, confidence {c:.2f}"


def grid(pipe, structure_seed, texture_seed, rows=3, cols=4, truncation=1.0, resolution=None, progress=None):
    """Rows share a structure code, columns a texture code; the last column shows each row's
    correspondence map. -> uint8 [rows*R, (cols+1)*R, 3]."""
    if rows is None or cols is None or not (1 <= int(rows) <= MAX_GRID and 1 <= int(cols) <= MAX_GRID):
        raise gr.Error(f"The grid has 1 to {MAX_GRID} rows and 1 to {MAX_GRID} columns.")
    s0, t0 = inputs.seed(structure_seed, "structure seed"), inputs.seed(texture_seed, "texture seed")
    lines = []
    for r in range(int(rows)):
        if progress is not None:
            progress((r, int(rows)), desc="generating rows")
        out = models.require(pipe).generate(
            structure_seed=[s0 + r] * int(cols), texture_seed=[t0 + c for c in range(int(cols))],
            truncation=inputs.fraction(truncation, "truncation"), resolution=image_size(pipe, resolution))
        cells = [*out.images, out.correspondence_images[0]]
        lines.append(np.concatenate([np.asarray(im.convert("RGB")) for im in cells], axis=1))
    return np.concatenate(lines, axis=0)


def create_demo(pipe) -> None:
    gr.Markdown(models.describe("coordgan", pipe), elem_classes="weights")  # which weights this tab runs
    gr.Markdown(
        "CoordGAN draws a **structure code** (pose and shape; its dense correspondence map colours each pixel by "
        "its canonical coordinate, x red, y green) and a **texture code** (appearance) independently. "
        "**Click the image**: the same canonical point in the second structure's image. " + model_summary(pipe)
    )
    sizes = pipe.generator.resolutions if pipe else []
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=280):
            with gr.Row():
                structure_seed = gr.Number(0, precision=0, label="Structure seed", min_width=100)
                texture_seed = gr.Number(1, precision=0, label="Texture seed", min_width=100)
            with gr.Row():
                structure_seed_2 = gr.Number(2, precision=0, label="Second structure seed", min_width=100)
                texture_seed_2 = gr.Number(3, precision=0, label="Second texture seed", min_width=100)
            structure_mix = gr.Slider(0, 1, value=0, step=0.05, label="Structure: first -> second seed")
            texture_mix = gr.Slider(0, 1, value=0, step=0.05, label="Texture: first -> second seed")
            truncation = gr.Slider(0, 1, value=1.0, step=0.05, label="Truncation (1 = none)")
            resolution = gr.Radio(sizes, value=sizes[-1] if sizes else None, label="Image size (px)",
                                  visible=len(sizes) > 1)
            button = gr.Button("Generate", variant="primary")
        with gr.Column(scale=3, min_width=280):
            # the endpoint's image at the model's size (API); shown enlarged (display.py: clicks stay exact)
            image = gr.Image(format="png", visible=False, elem_id="st-image-model")
            shown = gr.Image(label="Image (click it)", format="png", interactive=False, elem_id="st-image")
        with gr.Column(scale=3, min_width=280):
            correspondence = gr.Image(label="Correspondence map", format="png", height=display.HEIGHT,
                                      elem_classes="pixelated", elem_id="st-correspondence")
    clicked, clicked_text = matching.click_panel("The point | the same canonical point in the second structure seed's "
                                                 "image, same texture (heat: the relaxed eq. 1)", "st-clicked")
    controls = [structure_seed, texture_seed, structure_seed_2, texture_seed_2, structure_mix, texture_mix, truncation]
    gr.Examples([[0, 1, 2, 3, 0, 0, 1.0], [0, 5, 2, 3, 0, 0, 1.0], [4, 1, 2, 3, 0.5, 0, 0.7]], controls, label="Seeds")

    @events.handler
    def on_generate(structure_seed, texture_seed, structure_seed_2=None, texture_seed_2=None, structure_mix=0.0,
                    texture_mix=0.0, truncation=1.0, resolution=None):
        out = generate(pipe, structure_seed, texture_seed, structure_seed_2, texture_seed_2, structure_mix, texture_mix,
                       truncation, resolution)
        return out.images[0], out.correspondence_images[0]

    def show(image):
        return display.enlarged(image)

    triggers = [button.click, structure_mix.release, texture_mix.release, truncation.release]
    gr.on(triggers, on_generate, [*controls, resolution], [image, correspondence], api_name="generate").then(
        show, image, shown, api_visibility="private", queue=False)

    @events.handler
    def on_select(structure_seed, texture_seed, structure_seed_2, texture_seed_2, structure_mix,
                  texture_mix, truncation,
                  resolution, evt: gr.SelectData = None):
        settings = dict(structure_seed=structure_seed, texture_seed=texture_seed, structure_seed_2=structure_seed_2,
                        texture_seed_2=texture_seed_2, structure_mix=structure_mix, texture_mix=texture_mix,
                        truncation=truncation, resolution=resolution)
        return match_click(pipe, evt.index if evt is not None else None, settings)

    shown.select(on_select, [*controls, resolution], [clicked, clicked_text], api_visibility="private")

    with gr.Accordion("Grid: rows share the structure code, columns the texture code (last column: "
                      "correspondence map)", open=True):
        with gr.Row():
            rows = gr.Slider(1, MAX_GRID, value=3, step=1, label="Rows (structure seeds from the structure seed)")
            cols = gr.Slider(1, MAX_GRID, value=4, step=1, label="Columns (texture seeds from the texture seed)")
            grid_button = gr.Button("Grid")
        grid_image = gr.Image(label="Grid", format="png", height=display.HEIGHT, elem_classes="pixelated",
                              elem_id="st-grid")

    @events.handler
    def on_grid(structure_seed, texture_seed, rows, cols, truncation, resolution=None, progress=gr.Progress()):
        return grid(pipe, structure_seed, texture_seed, rows, cols, truncation, resolution, progress)

    grid_inputs = [structure_seed, texture_seed, rows, cols, truncation, resolution]
    grid_button.click(on_grid, grid_inputs, grid_image, api_name="grid")

    opened = events.on_open(pipe, on_generate, [*controls, resolution], [image, correspondence])
    if opened is not None:
        opened.then(show, image, shown, api_visibility="private", queue=False)
        events.on_open(pipe, on_grid, grid_inputs, grid_image)
        events.on_open(pipe, on_select, [*controls, resolution], [clicked, clicked_text])


if __name__ == "__main__":
    import sys

    pipes = models.load_all({"coordgan": sys.argv[1] if len(sys.argv) > 1 else None})
    with gr.Blocks() as demo:
        create_demo(pipes["coordgan"])
    demo.queue().launch()
