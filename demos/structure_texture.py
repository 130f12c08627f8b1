"""Tab: CoordGAN structure & texture. Two seeds, interpolation sliders, truncation, the
correspondence map, and a grid whose rows share structure and columns share texture (Fig. 1).

Runs alone with `python -m demos.structure_texture [PIPELINE_DIR]`.
"""

from __future__ import annotations

import gradio as gr
import numpy as np

from coordgan import matching as coordgan_matching

from . import inputs, matching, models, opening

MAX_GRID = 6


def model_summary(pipe) -> str:
    """One line on the loaded model: image sizes, the correspondence map's size, the encoder."""
    if not pipe:
        return ""
    g = pipe.generator
    sizes = " or ".join(f"{r} px" for r in reversed(g.resolutions))
    official = " (the authors' architecture)" if g.config.coordinate_grid == "linspace" else ""
    encoder = "an encoder for real images" if pipe.encoder is not None else "no encoder: real images cannot be encoded"
    return f"Model{official}: {sizes} images, a {g.config.coordinate_resolution}x{g.config.coordinate_resolution} correspondence map, {encoder}."


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
        raise gr.Error(f"The image size must be one of {', '.join(map(str, sizes))} px for this model, got {resolution!r}.")
    return value


def generate(pipe, structure_seed, texture_seed, structure_seed_2=None, texture_seed_2=None, structure_mix=0.0, texture_mix=0.0, truncation=1.0,
             resolution=None):
    """-> (image, correspondence map image), both PIL at `resolution` (default: the model's own)."""
    pipe = models.require(pipe)
    s = inputs.seed(structure_seed, "structure seed")
    t = inputs.seed(texture_seed, "texture seed")
    s2 = None if structure_seed_2 is None else inputs.seed(structure_seed_2, "second structure seed")
    t2 = None if texture_seed_2 is None else inputs.seed(texture_seed_2, "second texture seed")
    out = pipe.generate(
        structure_seed=s,
        texture_seed=t,
        structure_seed_2=s2,
        texture_seed_2=t2,
        structure_mix=inputs.fraction(structure_mix, "structure interpolation"),
        texture_mix=inputs.fraction(texture_mix, "texture interpolation"),
        truncation=inputs.fraction(truncation, "truncation", 0.0, 1.0),
        resolution=image_size(pipe, resolution),
    )
    return out.images[0], out.correspondence_images[0]


def match_click(pipe, controls, resolution, x: int, y: int):
    """A clicked pixel of the image of `controls` (the tab's seeds, mixes and truncation) -> the same
    canonical point in the image of the second structure seed (first texture seed): (match view
    with the heat map, the numbers). Both correspondence maps come from the generator, no encoder."""
    pipe = models.require(pipe)
    structure_seed, texture_seed, structure_seed_2, texture_seed_2, structure_mix, texture_mix, truncation = controls
    size = image_size(pipe, resolution)
    out_a = pipe.generate(
        structure_seed=inputs.seed(structure_seed, "structure seed"), texture_seed=inputs.seed(texture_seed, "texture seed"),
        structure_seed_2=inputs.seed(structure_seed_2, "second structure seed"), texture_seed_2=inputs.seed(texture_seed_2, "second texture seed"),
        structure_mix=inputs.fraction(structure_mix, "structure interpolation"), texture_mix=inputs.fraction(texture_mix, "texture interpolation"),
        truncation=inputs.fraction(truncation, "truncation"), resolution=size)
    out_b = pipe.generate(structure_seed=int(structure_seed_2), texture_seed=int(texture_seed), truncation=float(truncation), resolution=size)
    a, b = out_a.images[0], out_b.images[0]
    if not (0 <= x < a.width and 0 <= y < a.height):
        raise gr.Error(f"The point ({x}, {y}) is outside the {a.width}x{a.height} image; click inside it.")
    m = coordgan_matching.match_maps(out_a.correspondence_maps[0], out_b.correspondence_maps[0], [(x, y)], (a.height, a.width),
                                     (b.height, b.width), b.width)
    (mx, my), c = m.points[0], float(m.confidence[0])
    view = matching.match_view(a, (x, y), b, (mx, my), m.heatmaps[0])
    return view, f"({x}, {y}) in the image -> ({mx:.1f}, {my:.1f}) in the second structure's, confidence {c:.2f}"


def grid(pipe, structure_seed, texture_seed, rows=3, cols=4, truncation=1.0, progress=None, resolution=None):
    """Rows share a structure code, columns a texture code; the last column shows each row's
    correspondence map. -> uint8 [rows*R, (cols+1)*R, 3]."""
    pipe = models.require(pipe)
    resolution = image_size(pipe, resolution)
    s0 = inputs.seed(structure_seed, "structure seed")
    t0 = inputs.seed(texture_seed, "texture seed")
    if rows is None or cols is None or not (1 <= int(rows) <= MAX_GRID and 1 <= int(cols) <= MAX_GRID):
        raise gr.Error(f"The grid has 1 to {MAX_GRID} rows and 1 to {MAX_GRID} columns.")
    rows, cols = int(rows), int(cols)
    truncation = inputs.fraction(truncation, "truncation")
    lines = []
    for r in range(rows):
        if progress is not None:
            progress((r, rows), desc="generating rows")
        out = pipe.generate(structure_seed=[s0 + r] * cols, texture_seed=[t0 + c for c in range(cols)], truncation=truncation, resolution=resolution)
        cells = [np.asarray(im.convert("RGB")) for im in out.images] + [np.asarray(out.correspondence_images[0].convert("RGB"))]
        lines.append(np.concatenate(cells, axis=1))
    return np.concatenate(lines, axis=0)


def create_demo(pipe) -> None:
    models.missing_notice(pipe)
    gr.Markdown(
        "CoordGAN draws a **structure code** (pose and shape, shown as the dense correspondence "
        "map: each pixel's canonical coordinate, x red and y green) and a **texture code** "
        "(appearance) independently. Change one seed and the other stays put. The sliders "
        "interpolate each code towards a second seed. " + model_summary(pipe)
    )
    with gr.Row():
        with gr.Column():
            with gr.Row():
                structure_seed = gr.Number(0, precision=0, label="Structure seed")
                texture_seed = gr.Number(1, precision=0, label="Texture seed")
            with gr.Row():
                structure_seed_2 = gr.Number(2, precision=0, label="Second structure seed")
                texture_seed_2 = gr.Number(3, precision=0, label="Second texture seed")
            structure_mix = gr.Slider(0, 1, value=0, step=0.05, label="Structure: first -> second seed")
            texture_mix = gr.Slider(0, 1, value=0, step=0.05, label="Texture: first -> second seed")
            truncation = gr.Slider(0, 1, value=1.0, step=0.05, label="Truncation (1 = none)")
            sizes = pipe.generator.resolutions if pipe else []
            resolution = gr.Radio(sizes, value=sizes[-1] if sizes else None, label="Image size (px)", visible=len(sizes) > 1)
            button = gr.Button("Generate", variant="primary")
        # at its own size: Gradio 6.31's static image sends no clicks when given a height or enlarged by CSS
        image = gr.Image(label="Image (click it: the same point in the second structure)", format="png", elem_id="st-image")
        correspondence = gr.Image(label="Correspondence map", format="png", height=256, elem_classes="pixelated", elem_id="st-correspondence")
    controls = [structure_seed, texture_seed, structure_seed_2, texture_seed_2, structure_mix, texture_mix, truncation]
    gr.Examples([[0, 1, 2, 3, 0, 0, 1.0], [0, 5, 2, 3, 0, 0, 1.0], [4, 1, 2, 3, 0.5, 0, 0.7]], controls, label="Seeds")

    @models.inference
    def on_generate(structure_seed, texture_seed, structure_seed_2=None, texture_seed_2=None, structure_mix=0.0, texture_mix=0.0, truncation=1.0,
                    resolution=None):
        return generate(pipe, structure_seed, texture_seed, structure_seed_2, texture_seed_2, structure_mix, texture_mix, truncation, resolution)

    gr.on(
        [button.click, structure_mix.release, texture_mix.release, truncation.release],
        on_generate,
        [*controls, resolution],
        [image, correspondence],
        api_name="generate",
    )

    clicked, clicked_text = matching.click_panel("The point | the same canonical point in the second structure seed's image, same texture "
                                                 "(heat: the relaxed eq. 1)", "st-clicked")

    @models.inference
    def on_select(structure_seed, texture_seed, structure_seed_2, texture_seed_2, structure_mix, texture_mix, truncation, resolution,
                  evt: gr.SelectData):
        x, y = evt.index
        controls = (structure_seed, texture_seed, structure_seed_2, texture_seed_2, structure_mix, texture_mix, truncation)
        return match_click(pipe, controls, resolution, int(x), int(y))

    image.select(on_select, [*controls, resolution], [clicked, clicked_text], api_visibility="private")

    gr.Markdown("### Grid: rows share the structure code, columns the texture code (last column: correspondence map)")
    with gr.Row():
        rows = gr.Slider(1, MAX_GRID, value=3, step=1, label="Rows (structure seeds from the structure seed)")
        cols = gr.Slider(1, MAX_GRID, value=4, step=1, label="Columns (texture seeds from the texture seed)")
        grid_button = gr.Button("Grid")
    grid_image = gr.Image(label="Grid", format="png", height=256, elem_classes="pixelated", elem_id="st-grid")

    @models.inference
    def on_grid(structure_seed, texture_seed, rows, cols, truncation, resolution=None, progress=gr.Progress()):
        return grid(pipe, structure_seed, texture_seed, rows, cols, truncation, progress, resolution)

    grid_button.click(on_grid, [structure_seed, texture_seed, rows, cols, truncation, resolution], grid_image, api_name="grid")

    def first_result(*args):
        *controls, resolution, rows, cols = args
        r = pipe.generator.resolutions[-1] if resolution in (None, "") else int(resolution)
        return (*generate(pipe, *controls, resolution=resolution), grid(pipe, controls[0], controls[1], rows, cols, controls[6], resolution=resolution),
                *match_click(pipe, controls, resolution, r // 2, r // 2))

    opening.on_open(pipe, first_result, [*controls, resolution, rows, cols], [image, correspondence, grid_image, clicked, clicked_text])


if __name__ == "__main__":
    import sys

    pipes = models.load_all({"coordgan": sys.argv[1] if len(sys.argv) > 1 else None})
    with gr.Blocks() as demo:
        create_demo(pipes["coordgan"])
    demo.queue().launch()
