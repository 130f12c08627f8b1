"""Tab: Compare. Two photos (or a synthetic pair with its exact correspondence) and points of the
first: every loaded method that matches image A to image B shows its matches and confidence side by
side, with its time; on a synthetic pair also its error against the exact match. `/compare` returns
the same as JSON; `python bench/compare.py` prints PCK over many synthetic pairs from `compare`.

Which methods take which input: CoordGAN (through its encoder), GANgealing (through congealing) and
COAT (its features) match photo to photo; CoCosNet matches a label map to a photo, so it takes part
only on a synthetic pair, where image A's exact label map is known.
"""

from __future__ import annotations

import functools
import time

import gradio as gr
import numpy as np
from PIL import Image

import synthetic

from . import events, examples, inputs, matching, models

METHODS = matching.METHODS
PCK_ALPHAS = (0.05, 0.1)  # PCK@alpha: a match is correct within alpha * the long side of image B
MAX_GRID = 8


@functools.lru_cache(maxsize=64)
def synthetic_pair(seed: int, resolution: int = examples.RESOLUTION, pose: str = "aligned") -> synthetic.Batch:
    """Two renders of independent structures and textures (faces): their keypoints are the same
    canonical points, so B's keypoint k is the exact match of A's keypoint k."""
    seed = inputs.seed(seed, "synthetic pair seed")
    return synthetic.sample("faces", 2, resolution, seed=seed, pose=pose)


def exact_points(pair: synthetic.Batch) -> tuple[np.ndarray, np.ndarray]:
    """(A's keypoints, their exact matches in B) as pixel indices, keypoints visible in both only (and
    on a pixel of A: a keypoint within half a pixel of the border has an index just outside)."""
    a, b = pair.keypoints[0] - 0.5, pair.keypoints[1] - 0.5  # renderer: continuous pixels
    h, w = pair.image.shape[1:3]
    keep = pair.visible[0] & pair.visible[1] & (a >= 0).all(1) & (a[:, 0] <= w - 1) & (a[:, 1] <= h - 1)
    return a[keep], b[keep]


def grid_points(size: tuple[int, int], n: int) -> np.ndarray:
    """An n x n grid of pixel indices spread over an image of `size` (width, height)."""
    w, h = size
    xs, ys = (np.arange(n) + 0.5) / n * w - 0.5, (np.arange(n) + 0.5) / n * h - 0.5
    return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2).round()


def run_method(name: str, pipe, a: Image.Image, b: Image.Image, points: np.ndarray, labels_a=None) -> dict:
    """One method's matches of `points` from A to B: {points, confidence, seconds} or {skipped: why}."""
    if isinstance(pipe, models.MissingModel) or pipe is None:
        return {"skipped": "not loaded"}
    source = a
    if name == "cocosnet":  # a label map to a photo: A's exact map on a synthetic pair
        if labels_a is None:
            return {"skipped": "CoCosNet matches a label map to a photo: use a synthetic pair, or the Exemplar "
                               "translation tab with your map"}
        source = labels_a
    start = time.perf_counter()
    try:
        m = pipe.match_points(source, b, points)
    except ValueError as e:
        return {"skipped": str(e)}
    return {"points": m.points.astype(np.float64), "confidence": m.confidence.astype(np.float64),
            "seconds": time.perf_counter() - start}


def compare(pipelines: dict, a: Image.Image, b: Image.Image, points: np.ndarray, truth: np.ndarray | None = None,
            labels_a=None) -> dict:
    """Every method's matches of `points` (A's pixel indices) in B, with its time; with `truth` (the
    exact matches) each method's mean error in px and PCK, and the identity guess's."""
    out = {}
    side = max(b.size)
    guesses = {name: run_method(name, pipelines.get(name), a, b, points, labels_a) for name in METHODS}
    if truth is not None:
        guesses["identity"] = {"points": np.asarray(points, np.float64), "confidence": None, "seconds": 0.0}
    for name, r in guesses.items():
        if "skipped" in r:
            out[name] = r
            continue
        entry = {"points": np.round(r["points"], 2).tolist(), "seconds": round(r["seconds"], 4)}
        if r["confidence"] is not None:
            entry["confidence"] = np.round(r["confidence"], 4).tolist()
        if truth is not None:
            error = np.linalg.norm(r["points"] - truth, axis=1)
            entry["error_px"] = np.round(error, 3).tolist()
            entry["mean_error_px"] = round(float(error.mean()), 3) if len(error) else None
            for alpha in PCK_ALPHAS:
                entry[f"pck@{alpha}"] = round(float((error <= alpha * side).mean()), 4) if len(error) else None
        out[name] = entry
    return out


def table(results: dict) -> list[list]:
    """Rows for the tab's table: method, time, mean confidence, mean error, PCK (blank where none)."""
    rows = []
    for name, r in results.items():
        if "skipped" in r:
            rows.append([name, None, None, None, None, None, r["skipped"]])
            continue
        conf = np.mean(r["confidence"]) if r.get("confidence") else None
        rows.append([name, r["seconds"], None if conf is None else round(float(conf), 3), r.get("mean_error_px"),
                     r.get(f"pck@{PCK_ALPHAS[0]}"), r.get(f"pck@{PCK_ALPHAS[1]}"), ""])
    return rows


COLUMNS = ["method", "seconds", "mean confidence", "mean error px", f"PCK@{PCK_ALPHAS[0]}",
           f"PCK@{PCK_ALPHAS[1]}", "note"]


def _synthetic(seed) -> bool:
    """A seed >= 0 asks for a synthetic pair; -1 (or nothing) for the photos."""
    return seed is not None and seed != "" and float(seed) >= 0


def resolve(image_a, image_b, points, grid: int, seed):
    """The inputs of a comparison: (A, B, A's points, exact matches or None, A's label map or None).
    A seed (>= 0) renders a synthetic pair and takes its visible keypoints; else the photos, with the
    given points or an n x n grid."""
    if _synthetic(seed):
        pair = synthetic_pair(int(seed))
        pa, truth = exact_points(pair)
        return Image.fromarray(pair.image[0]), Image.fromarray(pair.image[1]), pa, truth, pair.labels[0]
    a, b = inputs.load_rgb(image_a, "image A"), inputs.load_rgb(image_b, "image B")
    if isinstance(points, str) and points.strip() or (points is not None and not isinstance(points, str)):
        pts = matching.parse_points(points)
    else:
        if grid is None or not 1 <= int(grid) <= MAX_GRID:
            raise gr.Error(f"The grid has 1 to {MAX_GRID} points a side.")
        pts = grid_points(a.size, int(grid))
    return a, b, pts, None, None


def _compared(pipelines: dict, image_a, image_b, points, grid, seed):
    """(A, B, A's points, exact matches or None, the `/compare` answer as JSON)."""
    a, b, pts, truth, labels_a = resolve(image_a, image_b, points, grid, seed)
    answer = {"image_a_size": list(a.size), "image_b_size": list(b.size), "points_a": np.round(pts, 2).tolist(),
              "convention": matching.CONVENTION, "methods": compare(pipelines, a, b, pts, truth, labels_a)}
    if truth is not None:
        answer["exact_points_b"] = np.round(truth, 2).tolist()
    return a, b, pts, truth, answer


def compare_api(pipelines: dict, image_a, image_b, points="", grid=4, seed=-1) -> dict:
    """The `/compare` answer: every method's matches (and errors on a synthetic pair) as JSON."""
    return _compared(pipelines, image_a, image_b, points, grid, seed)[-1]


def views(pipelines: dict, image_a, image_b, points="", grid=4, seed=-1):
    """-> (gallery of each method's matches drawn A -> B, the table rows, the `/compare` answer)."""
    a, b, pts, truth, answer = _compared(pipelines, image_a, image_b, points, grid, seed)
    gallery = []
    for name, r in answer["methods"].items():
        if "skipped" not in r and name != "identity":
            error = f", {r['mean_error_px']:.1f} px off" if truth is not None else ""
            caption = f"{name}: {r['seconds']:.2f} s{error}"
            view = matching.lines_view(a, b, pts, r["points"], truth=truth)
            gallery.append((matching.titled(view, caption), caption))
    return gallery, table(answer["methods"]), answer


def pair_files(seed):
    """The synthetic pair of `seed` as two image files, shown as image A and B (seed < 0: unchanged)."""
    if not _synthetic(seed):
        return gr.skip(), gr.skip()
    pair = synthetic_pair(int(seed))
    folder = matching.out_folder()
    paths = [folder / f"pair_{int(seed)}_{name}.png" for name in ("a", "b")]
    for image, path in zip(pair.image, paths):
        Image.fromarray(image).save(path)
    return str(paths[0]), str(paths[1])


def create_demo(pipelines: dict) -> None:
    gr.Markdown("Every method on the same pair: the points of image A, each method's matches in B (colour: where the "
                "point starts), its time and confidence. A **synthetic pair** (seed >= 0) comes with the exact "
                "match of every keypoint (white rings) and each method's error; CoCosNet joins there (it matches "
                "A's label map). For photos, give points as JSON or use a grid.")
    first = pair_files(0)
    with gr.Row(equal_height=False):
        with gr.Column(scale=2, min_width=360):
            with gr.Row():
                image_a = inputs.ImageInput(value=first[0], label="Image A", height=200, elem_id="cmp-a")
                image_b = inputs.ImageInput(value=first[1], label="Image B", height=200, elem_id="cmp-b")
            points = gr.Textbox(label="Points of A (JSON [[x, y], ...]; empty: the grid)", lines=1,
                                elem_id="cmp-points")
            with gr.Row():
                grid = gr.Slider(1, MAX_GRID, value=4, step=1, label="Grid (points a side)")
                seed = gr.Number(0, precision=0, label="Synthetic pair seed (-1: the photos)", minimum=-1)
            button = gr.Button("Compare", variant="primary")
        with gr.Column(scale=3, min_width=420):
            gallery = gr.Gallery(label="Matches, A left, B right", columns=2, height=300, object_fit="contain",
                                 format="png", elem_id="cmp-gallery")
            rows = gr.Dataframe(headers=COLUMNS, label="Per method", interactive=False, elem_id="cmp-table")
    answer = gr.JSON(label="JSON (as /compare returns it)", open=False, elem_id="cmp-json")
    photos = examples.photos("astronaut.png", "chelsea.png")
    faces = [examples.path("face_0.png"), examples.path("face_3.png")]
    gr.Examples([[*faces, "", 4, -1]] + ([[photos[0], photos[1], "", 4, -1]] if len(photos) == 2 else []),
                [image_a, image_b, points, grid, seed], label="Photos (seed -1): two synthetic faces; two real photos")
    seed.change(pair_files, seed, [image_a, image_b], api_visibility="private", queue=False)
    for image in (image_a, image_b):
        image.upload(lambda: -1, None, seed, api_visibility="private", queue=False)

    @events.handler
    def on_compare(image_a, image_b, points="", grid=4, seed=-1):
        return views(pipelines, image_a, image_b, points, grid, seed)

    button.click(on_compare, [image_a, image_b, points, grid, seed], [gallery, rows, answer],
                 api_visibility="private")

    @events.handler
    def on_compare_api(image_a, image_b, points="", grid=4, seed=-1):
        return compare_api(pipelines, image_a, image_b, points, grid, seed)

    api_button = gr.Button(visible=False)
    api_button.click(on_compare_api, [image_a, image_b, points, grid, seed], answer, api_name="compare")
    events.on_open(any(pipelines.values()), on_compare, [image_a, image_b, points, grid, seed], [gallery, rows, answer])


if __name__ == "__main__":
    pipes = models.load_all()
    with gr.Blocks() as demo:
        create_demo(pipes)
    demo.queue().launch()
