"""Tab: GANgealing. Congeal a set of images into one aligned frame; the average congealed image is a
canvas: an RGBA edit painted on it is carried to uploaded images and to the frames of a short
video; clicking the image to edit shows where a point lands in a second image.

Runs alone with `python -m demos.congealing`.
"""

from __future__ import annotations

from collections import deque
from types import SimpleNamespace

import gradio as gr
import numpy as np

from gangealing import matching as gangealing_matching

from . import display, events, examples, face_photos, inputs, matching, models
from .video import VIDEO_SUFFIXES, VideoReader, write_like

MAX_IMAGES = 16
VIDEO_BATCH = 8  # video frames decoded, edited and encoded at a time
IMAGES = ("image to edit", "second image")  # the click's two inputs, as error messages name them


def congeal(pipe, image):
    """-> (the congealed (aligned) image, [its sampling grid as .npy: for each congealed pixel, the
    pixel of the image it came from])."""
    pipe = models.require(pipe)
    photo = inputs.load_rgb(image)
    out = pipe.congeal([photo])
    flow = gangealing_matching.congealing_flow(pipe, photo, out)
    return out.images[0], [matching.save_flow(matching.out_folder(), "flow_congealed_to_image", flow)]


def congeal_set(pipe, files, progress=None):
    """-> (average congealed image as an editor canvas, gallery of the congealed images)."""
    pipe = models.require(pipe)
    files = inputs.paths(files)
    if not files:
        raise gr.Error("Upload a few images of the category first (or use the example set).")
    if len(files) > MAX_IMAGES:
        raise gr.Error(f"At most {MAX_IMAGES} images at once; upload fewer.")
    images = [inputs.load_rgb(p, f"image {i + 1}") for i, p in enumerate(files)]
    if progress is not None:
        progress(0.1, desc="congealing")
    congealed = pipe.congeal(images).images
    average = np.asarray(pipe.average_image(images).convert("RGB"))
    canvas = {"background": average, "layers": [], "composite": average}
    return canvas, [(c, f"congealed {i + 1}") for i, c in enumerate(congealed)]


def propagate_edit(pipe, edit_rgba, image, more_images=None, video=None, align_face=True, progress=None):
    """-> (edited image, gallery of (congealed, edited) images, edited video or None).

    The video is checked from its header before anything runs, then streams: VIDEO_BATCH frames
    are decoded, edited and encoded at a time (an MP4 comes back as an MP4 at its frame rate
    with its audio, an animated GIF / WebP / PNG as a GIF). With `align_face` and a face model,
    each image and frame is aligned to the model's frame, edited, and pasted back."""
    pipe = models.require(pipe)
    edit = inputs.load_rgba(edit_rgba, "edit")
    if np.asarray(edit)[..., 3].max() == 0:
        raise gr.Error("The edit is fully transparent: paint something on the average image first.")
    extra = inputs.paths(more_images)
    if len(extra) >= MAX_IMAGES:
        raise gr.Error(f"At most {MAX_IMAGES} images at once; upload fewer.")
    names = ["image"] + [f"image {i + 2}" for i in range(len(extra))]
    loaded = [face_photos.load(pipe, source, name, align_face) for source, name in zip([image, *extra], names)]
    seen = [s for _, s, _ in loaded]
    reader = VideoReader(video) if video else None
    if progress is not None:
        progress(0.05, desc="congealing and propagating")
    edited = [face_photos.pasted(aligned, e) for (_, _, aligned), e in zip(loaded, pipe.propagate_edit(edit, seen))]
    congealed = pipe.congeal(seen).images
    gallery = []
    for i, (c, e, (_, crop, aligned)) in enumerate(zip(congealed, edited, loaded)):
        gallery += [(crop, f"aligned crop {i + 1}")] if aligned is not None else []
        gallery += [(c, f"congealed {i + 1}"), (e, f"edited {i + 1}")]
    video_out = None
    if reader is not None:
        store = deque()  # each frame's alignment, from the frames read to the frames written
        crops = face_photos.frames(pipe, reader, align_face, store)
        frames = pipe.propagate_edit(edit, crops, batch_size=VIDEO_BATCH)  # a generator: VIDEO_BATCH frames at a time
        video_out = write_like(reader, _counted(face_photos.pasted_frames(frames, store), reader.frames, progress))
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
    return (gr.Image(value=path if gif else None, visible=gif),
            gr.Video(value=None if gif else path, visible=bool(path) and not gif))


def edit_from_editor(editor_value):
    merged = inputs.merged_layers(editor_value)
    return gr.skip() if merged is None else merged


def layout(pipe, prefix: str = "gg") -> SimpleNamespace:
    """The tab's components, by name; `prefix` starts their element ids."""
    gr.Markdown(
        "**1.** Congeal a set of images (aligns them to one frame) **2.** paint an edit on their average "
        "**3.** propagate it to an image, more images and a short video "
        f"({inputs.VIDEO_FORMATS}, at most {inputs.MAX_VIDEO_SECONDS:g} s and {inputs.MAX_VIDEO_FRAMES} frames). "
        "**Click the image to edit**: where the point lands in the second image."
    )
    face_set = [examples.path(f"face_{i}.png") for i in range(6)]
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=220):
            image_set = gr.File(face_set, file_count="multiple", file_types=["image"], height=120,
                                label=f"1. Images to congeal (up to {MAX_IMAGES})", elem_id=f"{prefix}-set")
            congeal_button = gr.Button("Congeal and average")
            edit_image = inputs.ImageInput(value=examples.path("face_0.png"), label="Image to edit (click it)",
                                           elem_classes=None,  # not stretched: clicks map to pixels
                                           elem_id=f"{prefix}-image")
        with gr.Column(scale=2, min_width=300):
            canvas = inputs.Editor("2. Average congealed image: paint your edit here", 2, height=400,
                                   elem_id=f"{prefix}-canvas")
        with gr.Column(scale=1, min_width=220):
            edit_button = gr.Button("3. Propagate the edit", variant="primary")
            align_face = face_photos.checkbox(pipe, elem_id=f"{prefix}-align")
            edited_image = gr.Image(label="Edited image", format="png", height=display.HEIGHT,
                                    elem_classes="pixelated", elem_id=f"{prefix}-edited")
            edited_gif = gr.Image(label="Edited video (animated GIF)", type="filepath", format="gif", visible=False,
                                  height=display.HEIGHT, elem_classes="pixelated", elem_id=f"{prefix}-video")
            edited_mp4 = gr.Video(label="Edited video", height=display.HEIGHT, visible=False,
                                  elem_id=f"{prefix}-video-mp4")
    with gr.Row(equal_height=False):
        edit_rgba = inputs.ImageInput(value=examples.path("edit_glasses.png"),
                                      label="Edit (RGBA, transparent = unchanged)",
                                      image_mode=None, elem_id=f"{prefix}-edit")
        more_images = gr.File(file_count="multiple", file_types=["image"], label="More images to edit",
                              elem_id=f"{prefix}-more")
        # a gr.File, not a gr.Video: gr.Video's upload takes video/* only (no GIF) and would convert formats
        video = gr.File(file_types=list(VIDEO_SUFFIXES), label=f"Short video ({inputs.VIDEO_FORMATS})",
                        elem_id=f"{prefix}-video-in")
        # the endpoint's video output: a file (MP4 or GIF, as the input was), previewed by the player that can show it
        edited_video = gr.File(label="Edited video (download)", elem_id=f"{prefix}-video-file")
    congealed_gallery = gr.Gallery(label="Congealed images", columns=8, height=180, object_fit="contain",
                                   fit_columns=False, format="png", elem_id=f"{prefix}-congealed-set")
    edited_gallery = gr.Gallery(label="Congealed and edited", columns=8, height=180, object_fit="contain",
                                fit_columns=False, format="png")
    with gr.Row(equal_height=False):
        with gr.Column(scale=1, min_width=220):
            single_congeal = gr.Button("Congeal the image to edit")
            congealed_image = gr.Image(label="Congealed image", format="png", height=display.HEIGHT,
                                       elem_classes="pixelated", elem_id=f"{prefix}-congealed")
        match_image = inputs.ImageInput(value=examples.path("face_3.png"), label="Second image (for clicks)",
                                        elem_id=f"{prefix}-match-image", scale=1)
        with gr.Column(scale=2):
            clicked, clicked_text = matching.click_panel("The point | where it lands in the second image, through the "
                                                         "congealed frame (heat: the congealed cells that sample it)",
                                                         f"{prefix}-clicked")
    congeal_files = gr.File(label="Take away: the congealing's sampling grid (.npy, congealed pixel -> image pixel)",
                            file_count="multiple", elem_id=f"{prefix}-files")
    gr.Examples(
        [[face_set, examples.path("face_0.png"), examples.path("video.gif")]]
        + [[face_set, photo, None] for photo in examples.photos("astronaut.png")]
        + [[examples.photos("chelsea.png"), photo, None] for photo in examples.photos("chelsea.png")],
        [image_set, edit_image, video],
        label="Synthetic faces and a short GIF; real photos from scikit-image (a cat for the authors' cat model)",
    )
    return SimpleNamespace(**{k: v for k, v in locals().items() if isinstance(v, gr.components.Component)})


def create_demo(pipe, name: str = "gangealing") -> None:
    """The tab over `pipe`; a second GANgealing model (`name` other than gangealing) gets its own
    element ids and endpoints (/congeal_NAME, /propagate_edit_NAME)."""
    gr.Markdown(models.describe(name, pipe), elem_classes="weights")  # which weights this tab runs
    suffix = "" if name == "gangealing" else "_" + name.split("_", 1)[-1]
    ui = layout(pipe, "gg" + suffix.replace("_", "-"))

    @events.handler
    def on_congeal_set(files, progress=gr.Progress()):
        return congeal_set(pipe, files, progress)

    ui.congeal_button.click(on_congeal_set, ui.image_set, [ui.canvas, ui.congealed_gallery], api_visibility="private")
    ui.canvas.input(edit_from_editor, ui.canvas, ui.edit_rgba, api_visibility="private", queue=False)

    @events.handler
    def on_congeal(image):
        return congeal(pipe, image)

    ui.single_congeal.click(on_congeal, ui.edit_image, [ui.congealed_image, ui.congeal_files],
                            api_name="congeal" + suffix)

    @events.handler
    def on_click(image, second, evt: gr.SelectData = None):
        return matching.click_photos(pipe, image, second, evt.index if evt else None, IMAGES)

    ui.edit_image.select(on_click, [ui.edit_image, ui.match_image], [ui.clicked, ui.clicked_text],
                         api_visibility="private")

    @events.handler
    def on_edit(edit_rgba, image, more_images=None, video=None, align_face=True, progress=gr.Progress()):
        return propagate_edit(pipe, edit_rgba, image, more_images, video, align_face, progress)

    ui.edit_button.click(
        on_edit, [ui.edit_rgba, ui.edit_image, ui.more_images, ui.video, ui.align_face],
        [ui.edited_image, ui.edited_gallery, ui.edited_video], api_name="propagate_edit" + suffix,
    ).then(preview_video, ui.edited_video, [ui.edited_gif, ui.edited_mp4], api_visibility="private", queue=False)

    events.on_open(pipe, on_edit, [ui.edit_rgba, ui.edit_image, ui.more_images, ui.video, ui.align_face],
                   [ui.edited_image, ui.edited_gallery, ui.edited_video])
    events.on_open(pipe, on_congeal_set, ui.image_set, [ui.canvas, ui.congealed_gallery])
    events.on_open(pipe, on_congeal, ui.edit_image, [ui.congealed_image, ui.congeal_files])
    events.on_open(pipe, on_click, [ui.edit_image, ui.match_image], [ui.clicked, ui.clicked_text])


if __name__ == "__main__":
    pipes = models.load_all()
    with gr.Blocks() as demo:
        create_demo(pipes["gangealing"])
    demo.queue().launch()
