"""Click a point, see its match: the picture (the point in image A | image B under the heat map of
where else it could go, and the match), the numbers, the `/match_points` API over the packages'
`matching` modules, and the take-away files (dense flow `.npy`, matches `.json`, index PNG).

Points everywhere are (x, y) pixel indices: the centre of pixel (i, j) is (i, j).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image, ImageDraw

from . import inputs, models

METHODS = ("coordgan", "gangealing", "cocosnet", "coat")  # the app's pipelines, each with match_points
MAX_POINTS = 1024  # points per /match_points call
PANEL = 256  # each image's height in the match view
GAP = 8
CONVENTION = "(x, y) pixel indices: the centre of pixel (i, j) is (i, j); x to the right, y down"


# ------------------------------------------------------------------ points in
def parse_points(points) -> np.ndarray:
    """JSON text or a list: [[x, y], ...], one [x, y], or {"points": [...]} -> float (N, 2)."""
    if isinstance(points, str):
        try:
            points = json.loads(points) if points.strip() else []
        except json.JSONDecodeError as e:
            raise gr.Error(f'The points are not valid JSON ({e.msg} at character {e.pos}); send e.g. [[12, '
                           '30], [40, 22]].') from None
    if isinstance(points, dict):
        points = points.get("points", [])
    try:
        arr = np.asarray(points, np.float64)
    except (TypeError, ValueError):
        raise gr.Error("The points must be a list of [x, y] pairs of numbers, e.g. [[12, 30], [40, 22]].") from None
    if arr.ndim == 1 and arr.shape == (2,):
        arr = arr[None]
    if arr.size == 0:
        raise gr.Error("No points given: send at least one [x, y] pair, e.g. [[12, 30]].")
    if arr.ndim != 2 or arr.shape[1] != 2 or not np.isfinite(arr).all():
        raise gr.Error("The points must be a list of [x, y] pairs of finite numbers, e.g. [[12, 30], [40, 22]].")
    if len(arr) > MAX_POINTS:
        raise gr.Error(f"{len(arr)} points; at most {MAX_POINTS} per call. Split them over several calls.")
    return arr


# ------------------------------------------------------------------ the methods
def run(pipe, a, b, points, **options):
    """`pipe.match_points(a, b, points, **options)`: every pipeline answers the same way (CoCosNet:
    `a` is the input map as the pipeline reads it, `exemplar_map=` its exemplar's map). A library's
    ValueError reaches the visitor through `events.handler`, which every event uses."""
    return models.require(pipe).match_points(a, b, points, **options)


def as_json(method: str, matches, size_a: tuple[int, int], size_b: tuple[int, int]) -> dict:
    """The API's answer: matched points and confidences, with the sizes and the convention."""
    return {
        "method": method,
        "points": np.round(matches.points.astype(np.float64), 2).tolist(),
        "confidence": np.round(matches.confidence.astype(np.float64), 4).tolist(),
        "image_a_size": [int(size_a[1]), int(size_a[0])],  # width, height
        "image_b_size": [int(size_b[1]), int(size_b[0])],
        "convention": CONVENTION,
    }


# ------------------------------------------------------------------ pictures
def _mark(draw: ImageDraw.ImageDraw, x: float, y: float, r: int, colour=(255, 0, 0)) -> None:
    draw.ellipse([x - r, y - r, x + r, y + r], outline=colour, width=max(1, r // 2))
    draw.line([x - 2 * r, y, x + 2 * r, y], fill=colour)
    draw.line([x, y - 2 * r, x, y + 2 * r], fill=colour)


def heat_overlay(image: Image.Image, heat: np.ndarray, alpha: float = 0.65) -> Image.Image:
    """`image` under a heat map (any grid covering the whole image), scaled to its maximum:
    transparent where 0, opaque yellow-red at the peak."""
    h = np.asarray(heat, np.float32)
    h = h / h.max() if h.max() > 0 else h
    h = np.asarray(Image.fromarray(h).resize(image.size, Image.BILINEAR))
    colour = np.stack([np.ones_like(h), np.clip(h * 1.5 - 0.25, 0, 1), np.zeros_like(h)], -1) * 255
    a = (np.clip(h, 0, 1) ** 0.7 * alpha)[..., None]
    out = np.asarray(image.convert("RGB"), np.float32) * (1 - a) + colour * a
    return Image.fromarray(out.round().astype(np.uint8))


def side_by_side(image_a: Image.Image, image_b: Image.Image, gap: int = GAP, heat_b=None):
    """A and B at PANEL px high (small images enlarged with the nearest neighbour), `gap` px apart,
    B under `heat_b` when given -> (canvas, each image's scale, B's left edge on the canvas)."""
    panels, scales = [], []
    for im in (image_a, image_b):
        scale = PANEL / im.height
        panels.append(im.convert("RGB").resize((max(1, round(im.width * scale)), PANEL),
                                               Image.NEAREST if im.height < PANEL else Image.BILINEAR))
        scales.append(scale)
    if heat_b is not None:
        panels[1] = heat_overlay(panels[1], heat_b)
    canvas = Image.new("RGB", (panels[0].width + gap + panels[1].width, PANEL), (255, 255, 255))
    canvas.paste(panels[0], (0, 0))
    canvas.paste(panels[1], (panels[0].width + gap, 0))
    return canvas, scales, panels[0].width + gap


def match_view(image_a: Image.Image, point, image_b: Image.Image, match, heat: np.ndarray) -> np.ndarray:
    """Side by side at PANEL px high: A with the point | B under the heat map, with the match."""
    canvas, scales, left = side_by_side(image_a, image_b, GAP, heat)
    draw = ImageDraw.Draw(canvas)
    r = max(3, PANEL // 40)
    _mark(draw, (point[0] + 0.5) * scales[0] - 0.5, (point[1] + 0.5) * scales[0] - 0.5, r)
    _mark(draw, (match[0] + 0.5) * scales[1] - 0.5 + left, (match[1] + 0.5) * scales[1] - 0.5, r, (0, 160, 255))
    return np.asarray(canvas)


def lines_view(image_a: Image.Image, image_b: Image.Image, points_a, points_b, max_lines: int = 160,
               truth=None) -> np.ndarray:
    """A (left) and B (right) side by side at PANEL px high, a line and a dot of one colour per match
    (colour = position in A; a spread subsample of at most `max_lines`); with `truth` (the exact
    matches in B), a white ring on each true match."""
    canvas, scales, left = side_by_side(image_a, image_b, 2 * GAP)
    width_a = left - 2 * GAP
    draw = ImageDraw.Draw(canvas)
    a, b = np.asarray(points_a, np.float64).reshape(-1, 2), np.asarray(points_b, np.float64).reshape(-1, 2)
    keep = np.linspace(0, len(a) - 1, min(len(a), max_lines)).round().astype(int) if len(a) else []
    for i in keep:
        (xa, ya), (xb, yb) = (a[i] + 0.5) * scales[0] - 0.5, (b[i] + 0.5) * scales[1] - 0.5
        xb += left
        u, v = xa / width_a, ya / PANEL  # colour by where the match starts
        colour = (int(255 * np.clip(u, 0, 1)), int(255 * np.clip(v, 0, 1)), int(255 * np.clip(1 - u, 0, 1)))
        draw.line([(xa, ya), (xb, yb)], fill=colour, width=1)
        for x, y in ((xa, ya), (xb, yb)):
            draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        if truth is not None:
            xt, yt = (np.asarray(truth[i], np.float64) + 0.5) * scales[1] - 0.5
            xt += left
            draw.ellipse([xt - 4, yt - 4, xt + 4, yt + 4], outline=(255, 255, 255), width=1)
    return np.asarray(canvas)


def titled(picture: np.ndarray, title: str) -> np.ndarray:
    """`picture` with `title` written on a white band above it."""
    image = Image.fromarray(np.asarray(picture))
    canvas = Image.new("RGB", (image.width, image.height + 18), (255, 255, 255))
    canvas.paste(image, (0, 18))
    ImageDraw.Draw(canvas).text((4, 3), title, fill=(0, 0, 0))
    return np.asarray(canvas)


def click(pipe, a, b, x: int, y: int, shown_a: Image.Image | None = None, **options):
    """One clicked point -> (match view, the numbers as text)."""
    m = run(pipe, a, b, [(x, y)], **options)
    (mx, my), c = m.points[0], float(m.confidence[0])
    view = match_view(shown_a if shown_a is not None else a, (x, y), b, (mx, my), m.heatmaps[0])
    return view, f"({x}, {y}) in A -> ({mx:.1f}, {my:.1f}) in B, confidence {c:.2f}"


def click_photos(pipe, image_a, image_b, point=None, what=("image A", "image B")):
    """Two photos (files as the tabs receive them) and a clicked `point` (x, y) of the first, or its
    centre when None (a tab's opening result) -> (match view, the numbers as text)."""
    pipe = models.require(pipe)
    a, b = inputs.load_rgb(image_a, what[0]), inputs.load_rgb(image_b, what[1])
    x, y = point if point is not None else (a.width // 2, a.height // 2)
    return click(pipe, a, b, int(x), int(y))


# ------------------------------------------------------------------ files to take away
def out_folder() -> Path:
    """A fresh folder per result (Gradio serves files from the system temp directory)."""
    return Path(tempfile.mkdtemp(prefix="results-"))


def save_flow(folder: Path, name: str, flow: np.ndarray) -> str:
    path = folder / f"{name}.npy"
    np.save(path, np.asarray(flow, np.float32))
    return str(path)


def save_json(folder: Path, name: str, data) -> str:
    path = folder / f"{name}.json"
    path.write_text(json.dumps(data, indent=1))
    return str(path)


def save_index_png(folder: Path, name: str, labels: np.ndarray) -> str:
    """Class ids as an index PNG (mode L: ids 0-255; mode I beyond)."""
    path = folder / f"{name}.png"
    labels = np.asarray(labels)
    image = Image.fromarray(labels.astype(np.uint8),
                            "L") if labels.max(initial=0) < 256 else Image.fromarray(labels.astype(np.int32), "I")
    image.save(path)
    return str(path)


def click_panel(label: str, elem_id: str):
    """The output pair of a tab's click-to-match: the view and its numbers."""
    with gr.Row():
        view = gr.Image(label=label, format="png", height=PANEL, interactive=False, elem_id=elem_id)
    text = gr.Textbox(label="Clicked point, its match and the confidence", interactive=False, elem_id=f"{elem_id}-text")
    return view, text
