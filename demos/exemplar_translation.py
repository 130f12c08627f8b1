"""Tab: CoCosNet exemplar translation. A label map (painted or uploaded) or an edge map plus an
exemplar photo -> an image with the layout of the map and the look of the exemplar, with the
warped exemplar; clicking the input shows where that point lands in the exemplar.

Runs alone with `python -m demos.exemplar_translation`.
"""

from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

import synthetic

from . import examples, inputs, models

FACE_CLASSES = synthetic.category("faces").class_names


def input_kind(pipe) -> str:
    """'mask' (label map of class ids) or 'edge' (an edge image), from the pipeline's config."""
    return pipe.input_kind if pipe else "mask"


def num_classes(pipe) -> int:
    return int(pipe.num_classes) if pipe and pipe.num_classes else len(FACE_CLASSES)


def class_names(pipe) -> tuple:
    names = getattr(pipe, "class_names", None) if pipe else None
    n = num_classes(pipe)
    if names and len(names) == n:
        return tuple(names)
    return FACE_CLASSES if n == len(FACE_CLASSES) else tuple(f"class {i}" for i in range(n))


def load_input_map(pipe, input_map, what: str = "input map"):
    """A label map (index or palette PNG) -> int array; an edge map -> greyscale PIL image."""
    kind = input_kind(pipe)
    if kind == "mask":
        return inputs.load_label_map(input_map, num_classes(pipe), f"{what} (label map)")
    if kind == "edge":
        return inputs.load_rgb(input_map, f"{what} (edge map)").convert("L")
    raise gr.Error(f"This CoCosNet checkpoint takes {kind!r} inputs, which the app cannot draw; load a mask or edge model.")


def exemplar_map_for(pipe, exemplar_map):
    if not pipe.needs_exemplar_map:
        return None
    if exemplar_map is None:
        raise gr.Error("This CoCosNet checkpoint also needs the exemplar's own map: upload it as the exemplar map (same kind as the input map).")
    return load_input_map(pipe, exemplar_map, "exemplar map")


def translate(pipe, input_map, exemplar, exemplar_map=None, progress=None):
    """-> (translated image, exemplar warped onto the input's layout), at the input map's size."""
    pipe = models.require(pipe)
    semantic = load_input_map(pipe, input_map)
    photo = inputs.load_rgb(exemplar, "exemplar")
    extra = exemplar_map_for(pipe, exemplar_map)
    if progress is not None:
        progress(0.1, desc="matching and translating")
    out = pipe.translate(semantic, photo, return_warped=True, exemplar_map=extra)
    return out.image, out.warped_exemplar


def mark(image: Image.Image, x: float, y: float) -> Image.Image:
    """A copy of `image` with a red circle and cross centred on pixel (x, y)."""
    marked = image.convert("RGB")
    draw = ImageDraw.Draw(marked)
    r = max(2, round(min(marked.size) / 40))
    draw.ellipse([x - r, y - r, x + r, y + r], outline=(255, 0, 0), width=max(1, r // 2))
    draw.line([x - 2 * r, y, x + 2 * r, y], fill=(255, 0, 0))
    draw.line([x, y - 2 * r, x, y + 2 * r], fill=(255, 0, 0))
    return marked


def correspondence(pipe, input_map, exemplar, x: int, y: int, exemplar_map=None):
    """Side by side: the input with a marker on pixel (x, y) | the exemplar with a marker where
    that pixel lands (both at the exemplar's height)."""
    pipe = models.require(pipe)
    semantic = load_input_map(pipe, input_map)
    photo = inputs.load_rgb(exemplar, "exemplar")
    extra = exemplar_map_for(pipe, exemplar_map)
    h, w = semantic.shape[:2] if isinstance(semantic, np.ndarray) else (semantic.height, semantic.width)
    if not (0 <= x < w and 0 <= y < h):
        raise gr.Error(f"The point ({x}, {y}) is outside the {w}x{h} input; click inside it.")
    (px, py), = pipe.correspondence(semantic, photo, [(x, y)], exemplar_map=extra).tolist()
    shown = Image.fromarray(inputs.colorize(semantic, num_classes(pipe))) if isinstance(semantic, np.ndarray) else semantic
    scale = photo.height / h
    shown = shown.convert("RGB").resize((max(1, round(w * scale)), photo.height), Image.NEAREST)
    left, right = mark(shown, (x + 0.5) * scale - 0.5, (y + 0.5) * scale - 0.5), mark(photo, px, py)
    both = Image.new("RGB", (left.width + 4 + right.width, photo.height), (255, 255, 255))
    both.paste(left, (0, 0))
    both.paste(right, (left.width + 4, 0))
    return both


def create_demo(pipe) -> None:
    models.missing_notice(pipe)
    kind, n, names = input_kind(pipe), num_classes(pipe), class_names(pipe)
    gr.Markdown(
        "CoCosNet finds a dense correspondence between the input map and the exemplar photo, warps "
        "the exemplar onto the map's layout, and renders the result. "
        + ("The input is a label map: upload an index PNG, a PNG in the class colours, or paint one below.\n\n" + inputs.legend(names) if kind == "mask" else "The input is an edge map (white edges on black).")
    )
    with gr.Row():
        input_map = inputs.ImageInput(label="Input label map" if kind == "mask" else "Input edge map", elem_classes=None, elem_id="et-input")  # not stretched: clicks map to pixels
        exemplar = inputs.ImageInput(label="Exemplar photo", elem_id="et-exemplar")
        exemplar_map = inputs.ImageInput(label="Exemplar's own map (only for models that need it)", visible=bool(pipe) and pipe.needs_exemplar_map)
    with gr.Accordion("Paint the label map", open=False, visible=kind == "mask"):
        blank = {"background": np.zeros((128, 128, 3), np.uint8), "layers": [], "composite": None}
        painter = inputs.LabelPainter(n, 6, value=blank, elem_id="et-painter")
    button = gr.Button("Translate", variant="primary")
    with gr.Row():
        result = gr.Image(label="Result", format="png", height=256, elem_classes="pixelated", elem_id="et-result")
        warped = gr.Image(label="Warped exemplar", format="png", height=256, elem_classes="pixelated", elem_id="et-warped")
        marked = gr.Image(label="Click the input: the point and its match in the exemplar", format="png", height=256, elem_id="et-marked")
    suffix = "_labels_color.png" if kind == "mask" else "_edges.png"
    gr.Examples(
        [[examples.path(f"face_{i}{suffix}"), examples.path(f"exemplar_{j}.png")] for i, j in ((0, 0), (1, 4), (2, 3))]
        + [[examples.path(f"face_3{suffix}"), photo] for photo in examples.photos("astronaut.png")],
        [input_map, exemplar],
        label="Synthetic faces (the first exemplar has the same structure, so its right answer is known); a scikit-image photo",
    )

    painter.input(lambda v: inputs.painted_or_skip(v, n), painter, input_map, api_visibility="private", queue=False)

    @models.inference
    def on_translate(input_map, exemplar, exemplar_map=None, progress=gr.Progress()):
        return translate(pipe, input_map, exemplar, exemplar_map, progress)

    button.click(on_translate, [input_map, exemplar, exemplar_map], [result, warped], api_name="translate")

    @models.inference
    def on_select(input_map, exemplar, exemplar_map, evt: gr.SelectData):
        x, y = evt.index
        return correspondence(pipe, input_map, exemplar, int(x), int(y), exemplar_map)

    input_map.select(on_select, [input_map, exemplar, exemplar_map], marked, api_visibility="private")


if __name__ == "__main__":
    pipes = models.load_all()
    with gr.Blocks() as demo:
        create_demo(pipes["cocosnet"])
    demo.queue().launch()
