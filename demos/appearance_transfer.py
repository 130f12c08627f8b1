"""Tab: COAT appearance transfer. A content photo and a style photo -> the content's object with the
style's appearance, a slider for n (decoder layers driven by the content), and the confident
matches (mutual nearest neighbours, eq. 2) that carried the style's features, drawn as lines
between the two photos.

Runs alone with `python -m demos.appearance_transfer [PIPELINE_DIR]`.
"""

from __future__ import annotations

import functools

import gradio as gr
import numpy as np
from PIL import Image

import synthetic

from . import display, events, examples, face_photos, inputs, matching, models

PHOTOS = ("content photo", "style photo")  # the two inputs, as error messages name them


def transfer(pipe, content_image, style_image, n=None, align_face=True):
    """-> (result at the content's size (at most DISPLAY_SIDE a side), matches view, [matches .json,
    dense flow .npy]). The JSON lists each scale's confident matches (pixel indices of the images
    the model saw); the flow holds, for each cell of the content's finest feature map, its best
    match in the style image the model saw. With `align_face` and a face model both photos are
    aligned to its frame (the matches view shows the crops) and the result is pasted back onto the
    content photo."""
    pipe = models.require(pipe)
    low, high = pipe.content_layers_range
    if n is None or not float(n).is_integer() or not low <= int(n) <= high:
        raise gr.Error(f"n (content layers) must be a whole number from {low} to {high}, the range this model was "
                       "trained for.")
    _, content, aligned = face_photos.load(pipe, content_image, PHOTOS[0], align_face)
    _, style, _ = face_photos.load(pipe, style_image, PHOTOS[1], align_face)
    if aligned is None:  # the content photo itself: results at its size, scaled down for the browser
        content = inputs.display_size(content)[0]
    style = inputs.display_size(style)[0]
    out = pipe.transfer(content, style, n=int(n))
    folder = matching.out_folder()
    scales = [{"feature_map_size": list(m.size), "content_points": np.round(m.content_points, 2).tolist(),
               "style_points": np.round(m.style_points, 2).tolist()} for m in out.matches]
    data = {"n": out.n, "content_size": [content.width, content.height], "style_size": [style.width, style.height],
            "content_aligned": aligned is not None, "convention": matching.CONVENTION, "scales_fine_to_coarse": scales}
    files = [matching.save_json(folder, "matches", data),
             matching.save_flow(folder, "flow_content_to_style", pipe.dense_flow(content, style))]
    view = matching.lines_view(content, style, out.matches[0].content_points, out.matches[0].style_points)
    return inputs.display_size(face_photos.pasted(aligned, out.image))[0], view, files


@functools.lru_cache(maxsize=None)
def synthetic_pair() -> tuple[str, str, str]:
    """Content render(sA, tA), style render(sB, tB) and the exact answer render(sA, tB), as files."""
    folder = examples.folder()
    s = synthetic.sample_structures("faces", 2, seed=31, pose="aligned")  # as the bundled model trained
    t = synthetic.sample_textures("faces", 2, seed=32)
    rendered = synthetic.render("faces", s[[0, 1, 0]], t[[0, 1, 1]], examples.RESOLUTION)
    images = rendered.image
    examples.remember_faces(images, rendered.keypoints)  # "Align the face" levels them from the drawn points
    names = []
    for name, image in zip(("coat_content", "coat_style", "coat_answer"), images):
        Image.fromarray(image).save(folder / f"{name}.png")
        names.append(str(folder / f"{name}.png"))
    return tuple(names)


def create_demo(pipe) -> None:
    gr.Markdown(models.describe("coat", pipe), elem_classes="weights")  # which weights this tab runs
    low, high = pipe.content_layers_range if pipe else (0, 8)
    default_n = pipe.default_content_layers if pipe else low
    gr.Markdown(
        "COAT puts the **appearance of the style photo** on the **object of the content photo**: features matched "
        "at several scales, only confident matches (mutual nearest neighbours, eq. 2) carry the style, a StyleGAN-type "
        "decoder renders. **Click the content photo**: where the point lands in the style photo."
    )
    pair = synthetic_pair()
    with gr.Row(equal_height=False):
        content = inputs.ImageInput(value=pair[0], label="Content photo (the object; click it)", elem_classes=None,
                                    elem_id="coat-content")  # not stretched: clicks map to pixels
        style = inputs.ImageInput(value=pair[1], label="Style photo (the appearance)", elem_id="coat-style")
        result = gr.Image(label="Result", format="png", height=display.HEIGHT, elem_classes="pixelated",
                          elem_id="coat-result")
        answer = gr.Image(pair[2], label="Exact answer (synthetic example only)", format="png", height=display.HEIGHT,
                          interactive=False, elem_classes="pixelated", elem_id="coat-answer")
    with gr.Row():
        n = gr.Slider(low, high, value=default_n, step=1, scale=3, label="n: decoder layers driven by the content",
                      info=f"{low}: the style's appearance in full; each step up keeps more of the content's own; "
                           f"{high}: the content as it is")
        align_face = face_photos.checkbox(pipe, scale=1, elem_id="coat-align")
        button = gr.Button("Transfer appearance", variant="primary", scale=1)
    with gr.Row(equal_height=False):
        with gr.Column():
            clicked, clicked_text = matching.click_panel("The point | where it lands in the style photo (heat: softmax "
                                                         "of eq. 1's similarities; confidence: eq. 2)", "coat-clicked")
        matches = gr.Image(label="Confident matches (finest scale): content left, style right", format="png",
                           height=display.HEIGHT, elem_id="coat-matches")
    files = gr.File(label="Take away: confident matches (.json) and the dense correspondence (.npy, content cell -> "
                    "style pixel)", file_count="multiple", elem_id="coat-files")
    rows = [[pair[0], pair[1], pair[2], default_n]]
    photos = examples.photos("astronaut.png", "chelsea.png")
    if len(photos) == 2:
        rows.append([photos[0], photos[1], None, default_n])
    gr.Examples(rows, [content, style, answer, n],
                label="A synthetic pair with its exact answer; two real photos (scikit-image)")

    @events.handler
    def on_transfer(content_image, style_image, n=default_n, align_face=True):
        return transfer(pipe, content_image, style_image, n, align_face)

    transfer_inputs = [content, style, n, align_face]
    gr.on([button.click, n.release], on_transfer, transfer_inputs, [result, matches, files],
          api_name="transfer_appearance")

    @events.handler
    def on_click(content_image, style_image, evt: gr.SelectData = None):
        return matching.click_photos(pipe, content_image, style_image, evt.index if evt else None, PHOTOS)

    content.select(on_click, [content, style], [clicked, clicked_text], api_visibility="private")
    events.on_open(pipe, on_transfer, transfer_inputs, [result, matches, files])
    events.on_open(pipe, on_click, [content, style], [clicked, clicked_text])


if __name__ == "__main__":
    import sys

    pipes = models.load_all({"coat": sys.argv[1] if len(sys.argv) > 1 else None})
    with gr.Blocks() as demo:
        create_demo(pipes["coat"])
    demo.queue().launch()
