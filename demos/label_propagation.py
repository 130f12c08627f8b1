"""Tab: CoordGAN label propagation. A reference image (uploaded or generated) with a label map
(uploaded, or painted with the class palette) carried to query images through the correspondence
maps (eq. 1); clicking the reference shows where a point lands in the query.

Runs alone with `python -m demos.label_propagation`.
"""

from __future__ import annotations

import gradio as gr
import numpy as np

import synthetic
from coordgan.correspondence import OUR_RULE, RULE_DESCRIPTIONS, RULES

from . import display, events, examples, face_photos, inputs, matching, models

CLASS_NAMES = synthetic.category("faces").class_names  # the bundled checkpoints' classes
NUM_CLASSES = len(CLASS_NAMES)
MAX_LABEL_IDS = 256  # CoordGAN propagation is training-free: the classes are the label map's own (ids 0-255)
MAX_QUERIES = 16
IMAGES = ("reference image", "query image")  # the two inputs, as error messages name them


def propagate_labels(pipe, reference_image, reference_labels, query_image, more_queries=None, rule=OUR_RULE,
                     align_face=True, progress=None):
    """-> (overlay on the query, coloured label map of the query, gallery of every query's overlay,
    [each query's labels as an index PNG at its own size, the first query's dense flow as .npy:
    for each pixel of the image the model saw, the reference pixel it matches]).

    With `align_face` and a face model, each query photo is aligned to the model's frame first
    (demos/face_photos.py) and its labels are pasted back onto the photo; the gallery also shows
    the aligned crops the model saw."""
    pipe = models.require(pipe)
    if rule not in RULES:
        raise gr.Error(f"The propagation rule must be one of {', '.join(RULES)}, got {rule!r}.")
    reference = inputs.load_rgb(reference_image, IMAGES[0])
    labels = inputs.load_label_map(reference_labels, MAX_LABEL_IDS, "reference label map")
    num_classes = max(NUM_CLASSES, int(labels.max()) + 1)  # colours: the palette's first num_classes
    if labels.shape != (reference.height, reference.width):
        raise gr.Error(
            f"The label map is {labels.shape[1]}x{labels.shape[0]} pixels but the reference image is "
            f"{reference.width}x{reference.height}; use a label map of the same size as the reference image."
        )
    if not (labels > 0).any():
        raise gr.Error("The reference label map is all background: paint or upload at least one part class.")
    extra = inputs.paths(more_queries)
    if len(extra) >= MAX_QUERIES:
        raise gr.Error(f"At most {MAX_QUERIES} query images at once; upload fewer.")
    names = [IMAGES[1]] + [f"query image {i + 2}" for i in range(len(extra))]
    loaded = [face_photos.load(pipe, source, name, align_face) for source, name in zip([query_image, *extra], names)]
    if progress is not None:
        progress(0.1, desc="encoding and matching correspondence maps")
    predicted = pipe.propagate_labels(reference, labels, [seen for _, seen, _ in loaded], rule=rule)
    on_photos = [face_photos.pasted(aligned, p) for (_, _, aligned), p in zip(loaded, predicted)]
    shown = [inputs.display_size(photo, p) for (photo, _, _), p in zip(loaded, on_photos)]  # scaled once, both views
    overlays = [inputs.overlay(q, p, num_classes) for q, p in shown]
    gallery = [(o, f"query {i + 1}") for i, o in enumerate(overlays)]
    gallery += [(inputs.overlay(seen, p, num_classes), f"query {i + 1}: the aligned crop the model saw")
                for i, ((_, seen, aligned), p) in enumerate(zip(loaded, predicted)) if aligned is not None]
    folder = matching.out_folder()
    files = [matching.save_index_png(folder, f"labels_query_{i + 1}", p) for i, p in enumerate(on_photos)]
    flow = pipe.dense_flow(loaded[0][1], reference)  # for each pixel the model saw of query 1, its reference pixel
    files.append(matching.save_flow(folder, "flow_query_1_to_reference", flow))
    return overlays[0], inputs.colorize(shown[0][1], num_classes), gallery, files


def editor_background(reference_image):
    """The reference image as the painting canvas (no layers yet)."""
    if reference_image is None:
        return None
    im = inputs.load_rgb(reference_image, IMAGES[0])
    return {"background": np.asarray(im), "layers": [], "composite": np.asarray(im)}


def create_demo(pipe) -> None:
    gr.Markdown(models.describe("coordgan", pipe), elem_classes="weights")  # which weights this tab runs
    if pipe and pipe.encoder is None:
        gr.Markdown("⚠️ **This CoordGAN model has no encoder**: it generates references, but reading real images "
                    "needs the authors' encoder checkpoint.")
    gr.Markdown("Give a reference image and its label map (an index PNG of class ids 0-255, a PNG in the class "
                "colours, or paint on the reference); each query pixel takes the label of the reference pixel with "
                "the same canonical coordinate. **Click the reference**: where the point lands in the query.")
    with gr.Row(equal_height=False):
        reference_image = inputs.ImageInput(value=examples.path("face_0.png"), label="Reference image (click it)",
                                            elem_classes=None,  # not stretched: clicks map to pixels
                                            elem_id="lp-reference")
        reference_labels = inputs.ImageInput(value=examples.path("face_0_labels_color.png"),
                                             label="Reference label map",
                                             elem_id="lp-labels")
        query_image = inputs.ImageInput(value=examples.path("face_1.png"), label="Query image", elem_id="lp-query")
        overlay = gr.Image(label="Query with propagated labels", format="png", height=display.HEIGHT,
                           elem_classes="pixelated", elem_id="lp-overlay")
    with gr.Row():
        rule = gr.Radio([(RULE_DESCRIPTIONS[r], r) for r in RULES], value=OUR_RULE, label="Propagation rule", scale=3)
        align_face = face_photos.checkbox(pipe, scale=2, elem_id="lp-align")
        propagate_button = gr.Button("Propagate labels", variant="primary", scale=1)
    with gr.Row(equal_height=False):
        with gr.Column():
            clicked, clicked_text = matching.click_panel("Click the reference: the point | where it lands in the query "
                                                         "(heat: the relaxed eq. 1 over the query's map)", "lp-clicked")
        label_map = gr.Image(label="Propagated label map", format="png", height=display.HEIGHT,
                             elem_classes="pixelated", elem_id="lp-label-map")
    with gr.Accordion("More queries, a generated reference, painting, classes", open=False):
        with gr.Row():
            more_queries = gr.File(file_count="multiple", file_types=["image"],
                                   label=f"More query images (up to {MAX_QUERIES - 1})")
            ref_structure = gr.Number(0, precision=0, label="Structure seed", min_width=80)
            ref_texture = gr.Number(1, precision=0, label="Texture seed", min_width=80)
            generate_button = gr.Button("Generate a reference")
        painter = inputs.LabelPainter(NUM_CLASSES, 2, elem_id="lp-painter")
        gr.Markdown("The painter and the examples use the synthetic-face classes:\n\n" + inputs.legend(CLASS_NAMES))
    gallery = gr.Gallery(label="All queries", columns=6, height=220, object_fit="contain", fit_columns=False,
                         format="png")
    label_files = gr.File(label="Take away: each query's labels (index PNG) and the first query's dense correspondence "
                          "(.npy, query pixel -> reference pixel)", file_count="multiple", elem_id="lp-files")
    faces = [examples.path(f"face_{i}{suffix}") for i in (0, 2, 4) for suffix in (".png", "_labels_color.png")]
    rows = [[faces[0], faces[1], examples.path("face_1.png")], [faces[2], faces[3], examples.path("face_3.png")]]
    rows += [[faces[4], faces[5], photo] for photo in examples.photos("astronaut.png")]
    gr.Examples(rows, [reference_image, reference_labels, query_image],
                label="Synthetic faces (exact labels); a photo from scikit-image as a query")

    @events.handler
    def on_generate(structure_seed, texture_seed):
        out = models.require(pipe).generate(structure_seed=inputs.seed(structure_seed, "structure seed"),
                                            texture_seed=inputs.seed(texture_seed, "texture seed"))
        return out.images[0]

    generate_button.click(on_generate, [ref_structure, ref_texture], reference_image, api_visibility="private")
    reference_image.change(editor_background, reference_image, painter, api_visibility="private", queue=False)
    painter.input(lambda v: inputs.painted_or_skip(v, NUM_CLASSES), painter, reference_labels,
                  api_visibility="private", queue=False)

    @events.handler
    def on_propagate(reference_image, reference_labels, query_image, more_queries=None, rule=OUR_RULE, align_face=True,
                     progress=gr.Progress()):
        return propagate_labels(pipe, reference_image, reference_labels, query_image, more_queries, rule, align_face,
                                progress)

    propagate_inputs = [reference_image, reference_labels, query_image, more_queries, rule, align_face]
    propagate_button.click(on_propagate, propagate_inputs, [overlay, label_map, gallery, label_files],
                           api_name="propagate_labels")

    @events.handler
    def on_click(reference_image, query_image, evt: gr.SelectData = None):
        return matching.click_photos(pipe, reference_image, query_image, evt.index if evt else None, IMAGES)

    reference_image.select(on_click, [reference_image, query_image], [clicked, clicked_text], api_visibility="private")

    if pipe and pipe.encoder is not None:
        events.on_open(pipe, on_propagate, propagate_inputs, [overlay, label_map, gallery, label_files])
        events.on_open(pipe, on_click, [reference_image, query_image], [clicked, clicked_text])


if __name__ == "__main__":
    pipes = models.load_all()
    with gr.Blocks() as demo:
        create_demo(pipes["coordgan"])
    demo.queue().launch()
