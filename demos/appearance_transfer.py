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
from PIL import Image, ImageDraw

import synthetic
from coat import matching as coat_matching

from . import examples, inputs, matching, models, opening

MATCH_PANEL = 256  # each photo's height in the matches view
PHOTOS = ("content photo", "style photo")  # the two inputs, as error messages name them
MAX_LINES = 160  # matches drawn (a spread subsample of the finest scale's)


def transfer(pipe, content_image, style_image, n=None):
    """-> (result at the content's size (at most DISPLAY_SIDE a side), matches view, [matches .json,
    dense flow .npy]). The JSON lists each scale's confident matches (pixel indices of the images
    as shown); the flow holds, for each cell of the content's finest feature map, its best match in
    the style photo."""
    pipe = models.require(pipe)
    content = inputs.display_size(inputs.load_rgb(content_image, "content photo"))[0]
    style = inputs.display_size(inputs.load_rgb(style_image, "style photo"))[0]
    if n is None or not float(n).is_integer() or not 0 <= int(n) <= pipe.num_layers:
        raise gr.Error(f"n (content layers) must be a whole number from 0 to {pipe.num_layers}.")
    out = pipe.transfer(content, style, n=int(n))
    folder = matching.out_folder()
    scales = [{"feature_map_size": list(m.size), "content_points": np.round(m.content_points, 2).tolist(),
               "style_points": np.round(m.style_points, 2).tolist()} for m in out.matches]
    data = {"n": out.n, "content_size": [content.width, content.height], "style_size": [style.width, style.height],
            "convention": matching.CONVENTION, "scales_fine_to_coarse": scales}
    files = [matching.save_json(folder, "matches", data),
             matching.save_flow(folder, "flow_content_to_style", coat_matching.dense_flow(pipe, content, style))]
    return out.image, matches_view(content, style, out.matches[0]), files


def matches_view(content: Image.Image, style: Image.Image, matches) -> np.ndarray:
    """Content (left) and style (right) side by side at MATCH_PANEL px high, a line and a dot of
    one colour per confident match (colour = position in the content)."""
    panels, scales = [], []
    for im in (content, style):
        scale = MATCH_PANEL / im.height
        panels.append(im.resize((max(1, round(im.width * scale)), MATCH_PANEL), Image.BILINEAR))
        scales.append(scale)
    gap = 16
    canvas = Image.new("RGB", (panels[0].width + gap + panels[1].width, MATCH_PANEL), (255, 255, 255))
    canvas.paste(panels[0], (0, 0))
    canvas.paste(panels[1], (panels[0].width + gap, 0))
    draw = ImageDraw.Draw(canvas)
    a, b = matches.content_points, matches.style_points
    keep = np.linspace(0, len(a) - 1, min(len(a), MAX_LINES)).round().astype(int) if len(a) else []
    for i in keep:
        (xa, ya), (xb, yb) = (a[i] + 0.5) * scales[0] - 0.5, (b[i] + 0.5) * scales[1] - 0.5
        xb += panels[0].width + gap
        u, v = xa / panels[0].width, ya / MATCH_PANEL  # colour by where the match starts
        colour = (int(255 * u), int(255 * v), int(255 * (1 - u)))
        draw.line([(xa, ya), (xb, yb)], fill=colour, width=1)
        for x, y in ((xa, ya), (xb, yb)):
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
    return np.asarray(canvas)


@functools.lru_cache(maxsize=None)
def synthetic_pair() -> tuple[str, str, str]:
    """Content render(sA, tA), style render(sB, tB) and the exact answer render(sA, tB), as files."""
    folder = examples.folder()
    s = synthetic.sample_structures("faces", 2, seed=31, pose="medium")
    t = synthetic.sample_textures("faces", 2, seed=32)
    images = synthetic.render("faces", s[[0, 1, 0]], t[[0, 1, 1]], examples.RESOLUTION).image
    names = []
    for name, image in zip(("coat_content", "coat_style", "coat_answer"), images):
        Image.fromarray(image).save(folder / f"{name}.png")
        names.append(str(folder / f"{name}.png"))
    return tuple(names)


def create_demo(pipe) -> None:
    models.missing_notice(pipe)
    num_layers = pipe.num_layers if hasattr(pipe, "num_layers") else 8
    default_n = pipe.default_content_layers if hasattr(pipe, "default_content_layers") else num_layers // 2
    gr.Markdown(
        "COAT transfers the **appearance of the style photo** onto the **object of the content photo**. "
        "Features of both are matched at several scales; only confident matches (mutual nearest "
        "neighbours) carry the style's features to the content's positions, and a StyleGAN-type decoder "
        "renders the result. The first **n** decoder layers are driven by the content: a smaller n "
        "transfers more. For the synthetic pair the exact answer (the content's structure in the "
        "style's texture) is shown beside it."
    )
    pair = synthetic_pair()
    with gr.Row():
        content = inputs.ImageInput(value=pair[0], label="Content photo (the object; click it to match a point)", elem_classes=None,
                                  elem_id="coat-content")  # not stretched: clicks map to pixels
        style = inputs.ImageInput(value=pair[1], label="Style photo (the appearance)", elem_id="coat-style")
        answer = gr.Image(pair[2], label="Exact answer (synthetic example only)", format="png", height=256, interactive=False,
                          elem_id="coat-answer")
    with gr.Row():
        n = gr.Slider(0, num_layers, value=default_n, step=1, label=f"n: decoder layers driven by the content (0-{num_layers})")
        button = gr.Button("Transfer appearance", variant="primary")
    with gr.Row():
        result = gr.Image(label="Result", format="png", height=256, elem_id="coat-result")
        matches = gr.Image(label="Confident matches (finest scale): content left, style right", format="png", height=256,
                           elem_id="coat-matches")
    files = gr.File(label="Take away: confident matches (.json) and the dense correspondence (.npy, content cell -> style pixel)",
                    file_count="multiple", elem_id="coat-files")
    clicked, clicked_text = matching.click_panel("Click the content photo: the point | where it lands in the style photo (heat: "
                                                 "softmax of eq. 1's similarities; confidence: eq. 2)", "coat-clicked")
    rows = [[pair[0], pair[1], pair[2], default_n]]
    photos = examples.photos("astronaut.png", "chelsea.png")
    if len(photos) == 2:
        rows.append([photos[0], photos[1], None, default_n])
    gr.Examples(rows, [content, style, answer, n], label="A synthetic pair with its exact answer; two real photos (scikit-image)")

    @models.inference
    def on_transfer(content_image, style_image, n=default_n):
        return transfer(pipe, content_image, style_image, n)

    gr.on([button.click, n.release], on_transfer, [content, style, n], [result, matches, files], api_name="transfer_appearance")

    @models.inference
    def on_select(content_image, style_image, evt: gr.SelectData):
        return matching.click_photos("coat", pipe, content_image, style_image, evt.index, PHOTOS)

    content.select(on_select, [content, style], [clicked, clicked_text], api_visibility="private")

    def first_result(content_image, style_image, n):
        return *transfer(pipe, content_image, style_image, n), *matching.click_photos("coat", pipe, content_image, style_image, None, PHOTOS)

    opening.on_open(pipe, first_result, [content, style, n], [result, matches, files, clicked, clicked_text])


if __name__ == "__main__":
    import sys

    pipes = models.load_all({"coat": sys.argv[1] if len(sys.argv) > 1 else None})
    with gr.Blocks() as demo:
        create_demo(pipes["coat"])
    demo.queue().launch()
