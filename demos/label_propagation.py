"""Tab: label propagation.

CoordGAN: a reference image (uploaded or generated) with a label map (uploaded, or painted with
the class palette) carried to query images through the correspondence maps (eq. 1).
GANgealing: the average congealed image is a canvas; an RGBA edit painted on it is carried to
uploaded images and to the frames of a short video.

Runs alone with `python -m demos.label_propagation`.
"""

from __future__ import annotations


import gradio as gr
import numpy as np

import synthetic

from coordgan import matching as coordgan_matching
from gangealing import matching as gangealing_matching

from . import examples, inputs, matching, models, opening, structure_texture
from .video import VIDEO_SUFFIXES, VideoReader, write_like

CLASS_NAMES = synthetic.category("faces").class_names  # the bundled checkpoints' classes
NUM_CLASSES = len(CLASS_NAMES)
MAX_LABEL_IDS = 256  # CoordGAN propagation is training-free: the classes are the label map's own (ids 0-255)
MAX_QUERIES = 16
MAX_EDIT_IMAGES = 16
VIDEO_BATCH = 8  # video frames decoded, edited and encoded at a time


# ------------------------------------------------------------------ CoordGAN
RULES = {"ours": "ours: the nearest canonical coordinate (eq. 1) at the image size",
         "authors": "the authors' evaluation: softmax over the L2 distance / 0.01 at the map size"}


def propagate_labels(pipe, reference_image, reference_labels, query_image, more_queries=None, progress=None, rule="ours"):
    """-> (overlay on the query, coloured label map of the query, gallery of every query's overlay,
    [each query's labels as an index PNG at its own size, the first query's dense flow as .npy:
    for each of its pixels, the reference pixel it matches])."""
    pipe = models.require(pipe)
    if rule not in RULES:
        raise gr.Error(f"The propagation rule must be one of {', '.join(RULES)}, got {rule!r}.")
    if pipe.encoder is None:
        raise gr.Error("This CoordGAN model has no encoder, so it cannot read real images; load one converted with the authors' "
                       "encoder checkpoint (python -m coordgan.convert_official CKPT.pt --encoder ENC.pt --output DIR).")
    reference = inputs.load_rgb(reference_image, "reference image")
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
    queries = [inputs.load_rgb(query_image, "query image")] + [inputs.load_rgb(p, f"query image {i + 2}") for i, p in enumerate(extra)]
    if progress is not None:
        progress(0.1, desc="encoding and matching correspondence maps")
    predicted = pipe.propagate_labels(reference, labels, queries, rule=rule)
    shown = [inputs.display_size(q, p) for q, p in zip(queries, predicted)]  # scaled down once, for both views
    overlays = [inputs.overlay(q, p, num_classes) for q, p in shown]
    gallery = [(o, f"query {i + 1}") for i, o in enumerate(overlays)]
    folder = matching.out_folder()
    files = [matching.save_index_png(folder, f"labels_query_{i + 1}", p) for i, p in enumerate(predicted)]
    files.append(matching.save_flow(folder, "flow_query_1_to_reference", coordgan_matching.dense_flow(pipe, reference, queries[0])))
    return overlays[0], inputs.colorize(shown[0][1], num_classes), gallery, files


def generate_reference(pipe, structure_seed, texture_seed):
    pipe = models.require(pipe)
    out = pipe.generate(structure_seed=inputs.seed(structure_seed, "structure seed"), texture_seed=inputs.seed(texture_seed, "texture seed"))
    return out.images[0]


def editor_background(reference_image):
    """The reference image as the painting canvas (no layers yet)."""
    if reference_image is None:
        return None
    im = inputs.load_rgb(reference_image, "reference image")
    return {"background": np.asarray(im), "layers": [], "composite": np.asarray(im)}


# ------------------------------------------------------------------ GANgealing
def congeal(pipe, image):
    """-> (the congealed (aligned) image, [its sampling grid as .npy: for each congealed pixel, the
    pixel of the image it came from])."""
    pipe = models.require(pipe)
    photo = inputs.load_rgb(image)
    out = pipe.congeal([photo])
    flow = gangealing_matching.congealing_flow(pipe, photo, out)
    return out.images[0], [matching.save_flow(matching.out_folder(), "flow_congealed_to_image", flow)]


def congeal_set(pipe, files, progress=None):
    """-> (average congealed image as an editor canvas, gallery of (input, congealed) pairs)."""
    pipe = models.require(pipe)
    files = inputs.paths(files)
    if not files:
        raise gr.Error("Upload a few images of the category first (or use the example set).")
    if len(files) > MAX_EDIT_IMAGES:
        raise gr.Error(f"At most {MAX_EDIT_IMAGES} images at once; upload fewer.")
    images = [inputs.load_rgb(p, f"image {i + 1}") for i, p in enumerate(files)]
    if progress is not None:
        progress(0.1, desc="congealing")
    congealed = pipe.congeal(images).images
    average = pipe.average_image(images)
    canvas = {"background": np.asarray(average.convert("RGB")), "layers": [], "composite": np.asarray(average.convert("RGB"))}
    gallery = [(c, f"congealed {i + 1}") for i, c in enumerate(congealed)]
    return canvas, gallery


def propagate_edit(pipe, edit_rgba, image, more_images=None, video=None, progress=None):
    """-> (edited image, gallery of (congealed, edited) images, edited video or None).

    The video is checked from its header before anything runs, then streams: VIDEO_BATCH frames
    are decoded, edited and encoded at a time (an MP4 comes back as an MP4 at its frame rate
    with its audio, an animated GIF / WebP / PNG as a GIF)."""
    pipe = models.require(pipe)
    edit = inputs.load_rgba(edit_rgba, "edit")
    if np.asarray(edit)[..., 3].max() == 0:
        raise gr.Error("The edit is fully transparent: paint something on the average image first.")
    extra = inputs.paths(more_images)
    if len(extra) >= MAX_EDIT_IMAGES:
        raise gr.Error(f"At most {MAX_EDIT_IMAGES} images at once; upload fewer.")
    images = [inputs.load_rgb(image, "image")] + [inputs.load_rgb(p, f"image {i + 2}") for i, p in enumerate(extra)]
    reader = VideoReader(video) if video else None
    if progress is not None:
        progress(0.05, desc="congealing and propagating")
    edited = pipe.propagate_edit(edit, images)
    congealed = pipe.congeal(images).images
    gallery = []
    for i, (c, e) in enumerate(zip(congealed, edited)):
        gallery += [(c, f"congealed {i + 1}"), (e, f"edited {i + 1}")]
    video_out = None
    if reader is not None:
        frames = pipe.propagate_edit(edit, reader, batch_size=VIDEO_BATCH)  # a generator: pulls VIDEO_BATCH frames at a time
        video_out = write_like(reader, _counted(frames, reader.frames, progress))
    return edited[0], gallery, video_out


def _counted(frames, total, progress):
    """Pass frames through, moving the progress bar once a batch."""
    for i, frame in enumerate(frames):
        if progress is not None and i % VIDEO_BATCH == 0:
            progress((i / total) if total else None, desc=f"video frame {i + 1}" + (f" of {total}" if total else ""))
        yield frame


def preview_video(path):
    """The edited video in the player that shows it: an <img> for a GIF, a <video> for an MP4."""
    gif = bool(path) and str(path).lower().endswith(".gif")
    return (gr.Image(value=path if gif else None, visible=gif or not path),
            gr.Video(value=None if gif else path, visible=bool(path) and not gif))


def edit_from_editor(editor_value):
    merged = inputs.merged_layers(editor_value)
    return gr.skip() if merged is None else merged


# ------------------------------------------------------------------ UI
def create_demo(coordgan, gangealing=None) -> None:
    gr.Markdown("## CoordGAN: carry a segmentation from one image to others")
    models.missing_notice(coordgan)
    if coordgan and coordgan.encoder is None:
        gr.Markdown("⚠️ **This CoordGAN model has no encoder**: it generates references, but reading real images needs the authors' encoder checkpoint.")
    gr.Markdown(
        structure_texture.model_summary(coordgan) + " "
        "Give a reference image and its label map (upload an index PNG whose pixel values are "
        "class ids, a PNG in the class colours, or paint on the reference below). Each query "
        "pixel takes the label of the reference pixel with the same canonical coordinate. The "
        "classes are your label map's own: an index PNG may use any ids 0-255; the painter and "
        "the examples use the synthetic-face classes:\n\n"
        + inputs.legend(CLASS_NAMES)
    )
    with gr.Row():
        with gr.Column():
            reference_image = inputs.ImageInput(value=examples.path("face_0.png"), label="Reference image (click it to match a point)",
                                                elem_classes=None, elem_id="lp-reference")  # not stretched: clicks map to pixels
            with gr.Row():
                ref_structure = gr.Number(0, precision=0, label="Structure seed", min_width=80)
                ref_texture = gr.Number(1, precision=0, label="Texture seed", min_width=80)
                generate_button = gr.Button("Generate a reference")
        with gr.Column():
            reference_labels = inputs.ImageInput(value=examples.path("face_0_labels_color.png"), label="Reference label map (index or palette PNG)",
                                                 elem_classes="pixelated", elem_id="lp-labels")
        with gr.Column():
            query_image = inputs.ImageInput(value=examples.path("face_1.png"), label="Query image", elem_id="lp-query")
            more_queries = gr.File(file_count="multiple", file_types=["image"], label=f"More query images (up to {MAX_QUERIES - 1})")
    with gr.Accordion("Paint the label map on the reference", open=False):
        painter = inputs.LabelPainter(NUM_CLASSES, 2, elem_id="lp-painter")
    with gr.Row():
        rule = gr.Radio([(label, key) for key, label in RULES.items()], value="ours", label="Propagation rule")
        propagate_button = gr.Button("Propagate labels", variant="primary")
    with gr.Row():
        overlay = gr.Image(label="Query with propagated labels", format="png", height=256, elem_classes="pixelated", elem_id="lp-overlay")
        label_map = gr.Image(label="Propagated label map", format="png", height=256, elem_classes="pixelated", elem_id="lp-label-map")
    gallery = gr.Gallery(label="All queries", columns=6, height=220, object_fit="contain", fit_columns=False, format="png")
    label_files = gr.File(label="Take away: each query's labels (index PNG) and the first query's dense correspondence (.npy, query pixel "
                          "-> reference pixel)", file_count="multiple", elem_id="lp-files")
    lp_clicked, lp_clicked_text = matching.click_panel("Click the reference: the point | where it lands in the query (heat: the relaxed "
                                                       "eq. 1 over the query's correspondence map)", "lp-clicked")
    gr.Examples(
        [[examples.path("face_0.png"), examples.path("face_0_labels_color.png"), examples.path("face_1.png")],
         [examples.path("face_2.png"), examples.path("face_2_labels_color.png"), examples.path("face_3.png")]]
        + [[examples.path("face_4.png"), examples.path("face_4_labels_color.png"), photo] for photo in examples.photos("astronaut.png")],
        [reference_image, reference_labels, query_image],
        label="Synthetic faces (exact labels); a photo from scikit-image as a query",
    )

    @models.inference
    def on_generate(structure_seed, texture_seed):
        return generate_reference(coordgan, structure_seed, texture_seed)

    generate_button.click(on_generate, [ref_structure, ref_texture], reference_image, api_visibility="private")
    reference_image.change(editor_background, reference_image, painter, api_visibility="private", queue=False)
    painter.input(lambda v: inputs.painted_or_skip(v, NUM_CLASSES), painter, reference_labels, api_visibility="private", queue=False)

    @models.inference
    def on_propagate(reference_image, reference_labels, query_image, more_queries=None, rule="ours", progress=gr.Progress()):
        return propagate_labels(coordgan, reference_image, reference_labels, query_image, more_queries, progress, rule)

    propagate_button.click(
        on_propagate, [reference_image, reference_labels, query_image, more_queries, rule], [overlay, label_map, gallery, label_files],
        api_name="propagate_labels",
    )

    @models.inference
    def on_reference_click(reference_image, query_image, evt: gr.SelectData):
        return matching.click_photos("coordgan", coordgan, reference_image, query_image, evt.index, ("reference image", "query image"))

    reference_image.select(on_reference_click, [reference_image, query_image], [lp_clicked, lp_clicked_text], api_visibility="private")

    def first_labels(reference_image, reference_labels, query_image):
        return (*propagate_labels(coordgan, reference_image, reference_labels, query_image),
                *matching.click_photos("coordgan", coordgan, reference_image, query_image, None, ("reference image", "query image")))

    if coordgan and coordgan.encoder is not None:
        opening.on_open(coordgan, first_labels, [reference_image, reference_labels, query_image],
                        [overlay, label_map, gallery, label_files, lp_clicked, lp_clicked_text])

    gr.Markdown("## GANgealing: paint once on the average congealed image")
    models.missing_notice(gangealing)
    gr.Markdown(
        "Congeal a set of images into one aligned frame, paint an edit (RGBA) on their average, "
        "and the edit is carried back into every image, and every frame of a short video "
        f"({inputs.VIDEO_FORMATS}, at most {inputs.MAX_VIDEO_SECONDS:g} s and {inputs.MAX_VIDEO_FRAMES} frames)."
    )
    with gr.Row():
        image_set = gr.File([examples.path(f"face_{i}.png") for i in range(6)], file_count="multiple", file_types=["image"],
                            label=f"Images to congeal (up to {MAX_EDIT_IMAGES})", elem_id="gg-set")
        congeal_button = gr.Button("Congeal and average")
    congealed_gallery = gr.Gallery(label="Congealed images", columns=8, height=180, object_fit="contain", fit_columns=False, format="png", elem_id="gg-congealed-set")
    with gr.Row():
        canvas = inputs.Editor("Average congealed image: paint your edit here", 2, elem_id="gg-canvas")
        edit_rgba = inputs.ImageInput(label="Edit (RGBA, transparent = unchanged)", image_mode=None, elem_id="gg-edit")
    with gr.Row():
        edit_image = inputs.ImageInput(value=examples.path("face_0.png"), label="Image to edit (click it to match a point)", elem_classes=None,
                                       elem_id="gg-image")  # not stretched: clicks map to pixels
        more_images = gr.File(file_count="multiple", file_types=["image"], label="More images to edit", elem_id="gg-more")
        # a gr.File, not a gr.Video: gr.Video's upload takes video/* only (no GIF) and would convert formats with a system ffmpeg
        video = gr.File(file_types=list(VIDEO_SUFFIXES), label=f"Short video ({inputs.VIDEO_FORMATS})", elem_id="gg-video-in")
    with gr.Row():
        single_congeal = gr.Button("Congeal this image")
        edit_button = gr.Button("Propagate the edit", variant="primary")
    with gr.Row():
        congealed_image = gr.Image(label="Congealed image", format="png", height=256, elem_classes="pixelated", elem_id="gg-congealed")
        edited_image = gr.Image(label="Edited image", format="png", height=256, elem_id="gg-edited")
        edited_gif = gr.Image(label="Edited video (animated GIF)", type="filepath", format="gif", height=256, elem_id="gg-video")
        edited_mp4 = gr.Video(label="Edited video", height=256, visible=False, elem_id="gg-video-mp4")
    # the endpoint's video output: a file (MP4 or GIF, as the input was), previewed by the player that can show it
    edited_video = gr.File(label="Edited video (download)", elem_id="gg-video-file")
    edited_gallery = gr.Gallery(label="Congealed and edited", columns=8, height=180, object_fit="contain", fit_columns=False, format="png")
    gr.Examples(
        [[[examples.path(f"face_{i}.png") for i in range(6)], examples.path("face_0.png"), examples.path("video.gif")]]
        + [[[examples.path(f"face_{i}.png") for i in range(6)], photo, None] for photo in examples.photos("astronaut.png")]
        + [[examples.photos("chelsea.png"), photo, None] for photo in examples.photos("chelsea.png")],
        [image_set, edit_image, video],
        label="Synthetic faces and a short GIF; real photos from scikit-image (a cat for the authors' cat model)",
    )

    @models.inference
    def on_congeal_set(files, progress=gr.Progress()):
        return congeal_set(gangealing, files, progress)

    congeal_button.click(on_congeal_set, image_set, [canvas, congealed_gallery], api_visibility="private")
    canvas.input(edit_from_editor, canvas, edit_rgba, api_visibility="private", queue=False)

    @models.inference
    def on_congeal(image):
        return congeal(gangealing, image)

    congeal_files = gr.File(label="Take away: the congealing's sampling grid (.npy, congealed pixel -> image pixel)", file_count="multiple",
                            elem_id="gg-files")
    single_congeal.click(on_congeal, edit_image, [congealed_image, congeal_files], api_name="congeal")

    with gr.Row():
        match_image = inputs.ImageInput(value=examples.path("face_3.png"), label="Second image: click the image to edit, see the point here",
                                        elem_id="gg-match-image")
        with gr.Column(scale=2):
            gg_clicked, gg_clicked_text = matching.click_panel("The point | where it lands in the second image, through the congealed frame "
                                                               "(heat: the congealed cells that sample it)", "gg-clicked")

    @models.inference
    def on_image_click(image, second, evt: gr.SelectData):
        return matching.click_photos("gangealing", gangealing, image, second, evt.index, ("image to edit", "second image"))

    edit_image.select(on_image_click, [edit_image, match_image], [gg_clicked, gg_clicked_text], api_visibility="private")

    def first_congealing(files, image, second):
        return (*congeal_set(gangealing, files), *congeal(gangealing, image),
                *matching.click_photos("gangealing", gangealing, image, second, None, ("image to edit", "second image")))

    opening.on_open(gangealing, first_congealing, [image_set, edit_image, match_image],
                    [canvas, congealed_gallery, congealed_image, congeal_files, gg_clicked, gg_clicked_text])

    @models.inference
    def on_edit(edit_rgba, image, more_images=None, video=None, progress=gr.Progress()):
        return propagate_edit(gangealing, edit_rgba, image, more_images, video, progress)

    edit_button.click(
        on_edit, [edit_rgba, edit_image, more_images, video], [edited_image, edited_gallery, edited_video], api_name="propagate_edit"
    ).then(preview_video, edited_video, [edited_gif, edited_mp4], api_visibility="private", queue=False)


if __name__ == "__main__":
    pipes = models.load_all()
    with gr.Blocks() as demo:
        create_demo(pipes["coordgan"], pipes["gangealing"])
    demo.queue().launch()
