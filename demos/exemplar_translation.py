"""Tab: CoCosNet exemplar translation. An input map plus an exemplar photo -> an image with the
layout of the map and the look of the exemplar, with the warped exemplar; clicking the input shows
where that point lands in the exemplar.

The input follows the loaded model: a label map (painted or uploaded) for mask models (ours, the
authors' ADE20k and CelebA-HQ), an edge map for edge models, a CelebAMask-HQ face label map for the
authors' CelebA-HQ edge model (its 15 edge / distance channels are built from it), OpenPose
keypoints JSON for the authors' DeepFashion pose model (rendered as a pose preview). Models that
also read the exemplar's own map (maskmix) show and require that input.

Runs alone with `python -m demos.exemplar_translation`.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image

from cocosnet.encodings import FACE_PARTS as CELEBA_PARTS  # CelebAMask-HQ part ids (the authors' face models)
from cocosnet.encodings import render_pose
from cocosnet.inputs import (  # what the loaded model asks for: the package's semantics, shown here
    EXAMPLE_POSES,
    FACE_TO_CELEBA,
    face_labels_for,
    MAX_JSON_BYTES,
    class_names,
    input_kind,
    num_classes,
    pose_preview,
)

import synthetic

from . import display, events, examples, face_photos, inputs, matching, models

__all__ = ["EXAMPLE_POSES", "class_names", "create_demo", "input_kind", "num_classes", "pose_preview", "translate"]


def read_pose_file(path) -> str:
    """An uploaded .json file -> its text, for the keypoints box."""
    if path is None:
        return gr.skip()
    path = Path(str(path))
    if path.stat().st_size > MAX_JSON_BYTES:
        raise gr.Error(f"{path.name!r} is larger than {MAX_JSON_BYTES // 1000} kB; upload the OpenPose JSON "
                       "of one image.")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise gr.Error(f"{path.name!r} is not a text file; upload the OpenPose .json file (UTF-8 text).") from None


def translate(pipe, input_map, exemplar, exemplar_map=None, align_face=True, progress=None):
    """-> (translated image, exemplar warped onto the input's layout, [the dense correspondence
    as .npy]), the images at the input map's size. The flow holds, for each cell of the input map
    at the correspondence resolution (f x f), its best match in the exemplar the model saw (pixel
    indices x, y). With `align_face` and a face model the exemplar photo is aligned to its frame
    first (not for models that also read the exemplar's map, which must keep its layout)."""
    pipe = models.require(pipe)
    semantic = inputs.load_cocosnet_map(pipe, input_map)
    extra = inputs.load_cocosnet_exemplar_map(pipe, exemplar_map)
    photo = face_photos.load(pipe, exemplar, "exemplar", align_face and extra is None)[1]
    if progress is not None:
        progress(0.1, desc="matching and translating")
    out = pipe.translate(semantic, photo, return_warped=True, exemplar_map=extra)  # ValueError: events.handler
    flow = pipe.dense_flow(semantic, photo, exemplar_map=extra)
    return out.image, out.warped_exemplar, [matching.save_flow(matching.out_folder(), "flow_input_to_exemplar", flow)]


def input_from_photo(pipe, photo):
    """A face photo -> (the input map the loaded model reads, drawn from the face's landmarks in the
    model's frame: a PNG in the class colours, or an edge map; the aligned crop it was drawn on).
    Hair, ears and neck are not drawn (landmarks do not give them): paint them on if wanted."""
    pipe = models.require(pipe)
    kind = input_kind(pipe)
    if kind not in ("mask", "face", "edge"):
        raise gr.Error("This CoCosNet model reads a pose or raw channels: an input cannot be drawn from a face photo.")
    celeba, crop = face_photos.parsing_map(pipe, photo)
    if kind == "edge":
        picture = Image.fromarray(synthetic.edge_map(celeba).astype(np.uint8) * 255)
    else:
        ids = face_labels_for(pipe, celeba)
        picture = Image.fromarray(inputs.colorize(ids, num_classes(pipe)))
    path = matching.out_folder() / "input_from_photo.png"
    picture.save(path)
    return str(path), crop


def shown_input(pipe, semantic) -> tuple[Image.Image, int, int]:
    """(the input as a picture, its height, its width): label maps in the class colours, edge maps
    as they are, poses rendered on their canvas."""
    if isinstance(semantic, dict):  # a pose
        h, w = semantic["canvas_height"], semantic["canvas_width"]
        return Image.fromarray(render_pose(semantic, (h, w))[0]), h, w
    if isinstance(semantic, np.ndarray):
        return Image.fromarray(inputs.colorize(semantic, num_classes(pipe))), *semantic.shape[:2]
    return semantic, semantic.height, semantic.width


def correspondence(pipe, input_map, exemplar, x: int | None, y: int | None, exemplar_map=None):
    """-> (the input with a marker on pixel (x, y) (None: the input's centre) | the exemplar under
    the softmax row of that point (eq. 4) with a marker on its match, the numbers as text)."""
    pipe = models.require(pipe)
    semantic = inputs.load_cocosnet_map(pipe, input_map)
    photo = inputs.load_rgb(exemplar, "exemplar")
    extra = inputs.load_cocosnet_exemplar_map(pipe, exemplar_map)
    shown, h, w = shown_input(pipe, semantic)
    if x is None or y is None:
        x, y = w // 2, h // 2
    if not (0 <= x < w and 0 <= y < h):
        raise gr.Error(f"The point ({x}, {y}) is outside the {w}x{h} input; click inside it.")
    return matching.click(pipe, semantic, photo, x, y, shown_a=shown, exemplar_map=extra)


# ------------------------------------------------------------------ examples per input kind
def celeba_example(i: int) -> str:
    """Example face i's label map with CelebAMask-HQ ids, in the app's 19-class colours."""
    path = Path(examples.path(f"face_{i}_celeba_color.png"))
    if not path.exists():
        ids = FACE_TO_CELEBA[np.asarray(Image.open(examples.path(f"face_{i}_labels.png")), np.int64)]
        Image.fromarray(inputs.colorize(ids, len(CELEBA_PARTS))).save(path)
    return str(path)


def example_rows(pipe) -> tuple[list, str]:
    """(rows [input, exemplar(, exemplar map)], label) for the loaded model's input kind."""
    kind, n = input_kind(pipe), num_classes(pipe)
    photos = examples.photos("astronaut.png")
    if kind == "pose":
        rows = [[EXAMPLE_POSES[0], photos[0] if photos else examples.path("exemplar_0.png")],
                [EXAMPLE_POSES[1],
                 examples.path("exemplar_1.png")], [EXAMPLE_POSES[2], examples.path("exemplar_2.png")]]
        return rows, ("Hand-made OpenPose poses (COCO-18 keypoints on a 256x256 canvas); "
                      "exemplars: a scikit-image photo and synthetic faces")
    pairs = ((0, 0), (1, 4), (2, 3))
    if kind == "face" or (kind == "mask" and n == len(CELEBA_PARTS)):
        maps = [celeba_example(i) for i in range(6)]
        label = "Synthetic faces relabelled with CelebAMask-HQ part ids (the first exemplar has the same structure)"
    else:
        suffix = "_labels_color.png" if kind == "mask" else "_edges.png"
        maps = [examples.path(f"face_{i}{suffix}") for i in range(6)]
        label = ("Synthetic faces (the first exemplar has the same structure, so its right answer is known); "
                 "a scikit-image photo")
    rows = [[maps[i], examples.path(f"exemplar_{j}.png")] + ([maps[j]] if pipe and pipe.needs_exemplar_map else [])
            for i, j in pairs]
    if not (pipe and pipe.needs_exemplar_map):
        rows += [[maps[3], photo] for photo in photos]
    return rows, label


# ------------------------------------------------------------------ the tab
def describe(pipe) -> str:
    kind, names = input_kind(pipe), class_names(pipe)
    text = {
        "mask": "The input is a label map: upload an index PNG, a PNG in the class colours, or paint one below.\n\n"
                + inputs.legend(names),
        "edge": "The input is an edge map (white edges on black).",
        "face": "This is the authors' CelebA-HQ **edge** model: the input is a CelebAMask-HQ face label map (index "
                "PNG with part "
                "ids 0-18, a PNG in the class colours, or painted below); the app builds the model's 15 edge "
                "and distance "
                "channels from it.\n\n" + inputs.legend(names),
        "pose": "This is the authors' DeepFashion **pose** model: the input is OpenPose JSON with the 18 COCO "
                "keypoints of one "
                "person in pixels (`{\"people\": [{\"pose_keypoints_2d\": [x0, y0, c0, ...]}]}`; confidence 0 "
                "= missing; "
                "optional `canvas_height` / `canvas_width`, default 256). BODY_25 files are converted. The "
                "preview shows the "
                "skeleton the model reads; click it to see where a point lands in the exemplar.",
        "channels": "This checkpoint reads raw channels that the app cannot build.",
    }[kind]
    if pipe and pipe.needs_exemplar_map:
        text += ("\n\nThis model also reads the **exemplar's own map** (same kind, the layout of the exemplar photo): "
                 "upload it too.")
    return text


def input_component(kind: str, value):
    """The input box for the model's input kind: OpenPose JSON for pose models, else an image (shown
    at its own size: clicks map to its pixels)."""
    if kind == "pose":
        return gr.Code(EXAMPLE_POSES[0], language="json", label="Input pose: OpenPose keypoints JSON", lines=8,
                       max_lines=16, elem_id="et-input")
    label = {"mask": "Input label map", "face": "Input face label map (CelebAMask-HQ ids)"}.get(kind, "Input edge map")
    return inputs.ImageInput(value=value, label=f"{label} (click it)", elem_classes=None, elem_id="et-input")


def create_demo(pipe) -> None:
    gr.Markdown(models.describe("cocosnet", pipe), elem_classes="weights")  # which weights this tab runs
    kind, n = input_kind(pipe), num_classes(pipe)
    needs_map = bool(pipe) and pipe.needs_exemplar_map
    gr.Markdown("CoCosNet matches the input map to the exemplar photo (eq. 4), warps the exemplar onto the map's "
                "layout and renders the result. **Click the input**: where the point lands in the exemplar. "
                "What the input is, and a painter: below.")
    rows, label = example_rows(pipe)
    first = rows[0] + [None] * (3 - len(rows[0]))
    with gr.Row(equal_height=False):
        input_map = input_component(kind, first[0])
        exemplar = inputs.ImageInput(value=first[1], label="Exemplar photo", elem_id="et-exemplar")
        exemplar_map = inputs.ImageInput(value=first[2], label="Exemplar's own map (required by this model)",
                                         visible=needs_map, elem_id="et-exemplar-map")
        result = gr.Image(label="Result", format="png", height=display.HEIGHT, elem_classes="pixelated",
                          elem_id="et-result")
    with gr.Row():
        from_photo = gr.Button("Make the input from a face photo (the exemplar)", scale=2,
                               visible=kind in ("mask", "face", "edge"))
        align_face = face_photos.checkbox(pipe, scale=2, elem_id="et-align")
        button = gr.Button("Translate", variant="primary", scale=2)
    with gr.Row(equal_height=False):
        with gr.Column():
            marked, marked_text = matching.click_panel("The point | where it lands in the exemplar (heat: the softmax "
                                                       "row of eq. 4)", "et-marked")
        warped = gr.Image(label="Warped exemplar", format="png", height=display.HEIGHT, elem_classes="pixelated",
                          elem_id="et-warped")
    if kind == "pose":
        with gr.Row():
            pose_file = gr.File(label="Or upload an OpenPose .json file", file_types=[".json"], type="filepath",
                                elem_id="et-pose-file")
            preview = gr.Image(pose_preview(pipe, EXAMPLE_POSES[0]), label="The pose the model reads (click a point)",
                               format="png", height=display.HEIGHT, interactive=False, elem_id="et-pose-preview")
    with gr.Accordion("The input this model reads" + (", and a painter" if kind in ("mask", "face") else ""),
                      open=False):
        gr.Markdown(describe(pipe))
        blank = {"background": np.zeros((128, 128, 3), np.uint8), "layers": [], "composite": None}
        painter = inputs.LabelPainter(n, 6, value=blank, visible=kind in ("mask", "face"), elem_id="et-painter")
    files = gr.File(label="Take away: the dense correspondence (.npy, input cell -> exemplar pixel)",
                    file_count="multiple", elem_id="et-files")
    crop_used = gr.Image(label="The aligned crop the input was drawn from", format="png", height=display.HEIGHT,
                         interactive=False, elem_id="et-crop")
    gr.Examples(rows, [input_map, exemplar, exemplar_map][: len(rows[0])], label=label)

    painter.input(lambda v: inputs.painted_or_skip(v, n), painter, input_map, api_visibility="private", queue=False)

    @events.handler
    def on_translate(input_map, exemplar, exemplar_map=None, align_face=True, progress=gr.Progress()):
        return translate(pipe, input_map, exemplar, exemplar_map, align_face, progress)

    translate_inputs = [input_map, exemplar, exemplar_map, align_face]
    button.click(on_translate, translate_inputs, [result, warped, files], api_name="translate")

    @events.handler
    def on_from_photo(photo):
        return input_from_photo(pipe, photo)

    from_photo.click(on_from_photo, exemplar, [input_map, crop_used], api_name="input_from_photo")

    @events.handler
    def on_click(input_map, exemplar, exemplar_map, evt: gr.SelectData = None):
        x, y = evt.index if evt is not None else (None, None)
        return correspondence(pipe, input_map, exemplar, x, y, exemplar_map)

    events.on_open(pipe, on_translate, translate_inputs, [result, warped, files])
    events.on_open(pipe, on_click, [input_map, exemplar, exemplar_map], [marked, marked_text])

    if kind == "pose":
        pose_file.upload(read_pose_file, pose_file, input_map, api_visibility="private", queue=False)
        input_map.change(lambda text: pose_preview(pipe, text), input_map, preview, api_visibility="private",
                         queue=False)
        preview.select(on_click, [input_map, exemplar, exemplar_map], [marked, marked_text], api_visibility="private")
    else:
        input_map.select(on_click, [input_map, exemplar, exemplar_map], [marked, marked_text], api_visibility="private")


if __name__ == "__main__":
    pipes = models.load_all()
    with gr.Blocks() as demo:
        create_demo(pipes["cocosnet"])
    demo.queue().launch()
