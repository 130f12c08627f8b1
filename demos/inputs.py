"""Input checks shared by every tab: each refusal is a gr.Error that says what to do.

Images arrive as file paths (see `ImageInput`), so a file that is not an image reaches our
checks instead of failing inside Gradio. Sizes are checked from the header, before decoding.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr
import numpy as np
from PIL import Image, UnidentifiedImageError

import synthetic
from cocosnet import inputs as cocosnet_inputs
from synthetic import colorize  # the app's class colours: synthetic.palette, background black

MAX_SIDE = 4096  # pixels, either side (so at most 16.8 megapixels: a 4096 x 4096 photo passes)
DISPLAY_SIDE = 1024  # results shown in the browser are scaled down to this many pixels a side
MIN_SIDE = 16  # pixels, either side
MAX_VIDEO_SECONDS = 10.0
MAX_VIDEO_FRAMES = 120
MAX_VIDEO_SIDE = 1024  # pixels: 120 frames of 16 MP would not fit in memory
MAX_SEED = 2**31 - 1
IMAGE_FORMATS = "PNG, JPEG, WebP, BMP, TIFF or GIF"
VIDEO_FORMATS = "an MP4, MOV, WebM or MKV video, or an animated GIF, WebP or PNG"


def ImageInput(**kwargs) -> gr.Image:  # noqa: N802 (used like a component class)
    """A gr.Image whose function receives the uploaded file's path untouched.

    Gradio's own preprocessing opens (and may convert) the image before our code runs, so a
    text file would fail there with a bare traceback and a label map could be altered; this
    keeps the bytes as sent and leaves every check to the functions below.
    """
    kwargs.setdefault("type", "filepath")
    kwargs.setdefault("image_mode", None)
    kwargs.setdefault("format", "png")
    kwargs.setdefault("height", 256)
    kwargs.setdefault("elem_classes", "pixelated")  # small model images shown enlarged, sharp
    component = gr.Image(**kwargs)
    default = component.preprocess

    def preprocess(payload):
        if payload is None or (payload.url and payload.url.startswith("data:")):
            return default(payload)
        return payload.path

    component.preprocess = preprocess
    return component


def Editor(label: str, brush_size: int, colors: list[str] | None = None, **kwargs) -> gr.ImageEditor:  # noqa: N802
    """A gr.ImageEditor whose paint layers come to the function as RGBA numpy arrays; with
    `colors` the brush is limited to them (the class palette for label maps)."""
    fixed = {"colors": colors, "color_mode": "fixed"} if colors else {}
    brush = gr.Brush(default_size=brush_size, **fixed)
    return gr.ImageEditor(label=label, type="numpy", image_mode="RGBA", brush=brush, sources=("upload",),
                          format="png", **kwargs)


def LabelPainter(num_classes: int, brush_size: int, **kwargs) -> gr.ImageEditor:  # noqa: N802
    """An Editor to paint a label map with the class palette (unpainted pixels are background)."""
    return Editor("Paint parts with the class colours (unpainted = background)", brush_size,
                  hex_colors(num_classes)[1:], **kwargs)


# ------------------------------------------------------------------ images
def check_size(width: int, height: int, what: str) -> None:
    if width > MAX_SIDE or height > MAX_SIDE:
        raise gr.Error(f"The {what} is {width}x{height} pixels; the limit is {MAX_SIDE} pixels a side. Resize it and "
                       "upload it again.")
    if width < MIN_SIDE or height < MIN_SIDE:
        raise gr.Error(f"The {what} is {width}x{height} pixels; it needs at least {MIN_SIDE} pixels a side. Upload a "
                       "larger image.")


def open_image(source, what: str = "image") -> Image.Image:
    """A path / PIL image / uint8 array -> a decoded PIL image in its own mode, size-checked."""
    if source is None:
        raise gr.Error(f"No {what} given: upload one (or pick an example) first.")
    if isinstance(source, np.ndarray):
        channels_ok = source.ndim == 2 or (source.ndim == 3 and source.shape[-1] in (3, 4))
        if source.dtype != np.uint8 or not channels_ok:
            raise gr.Error(f"The {what} must be an 8-bit image array [H, W] or [H, W, 3|4]; got {source.dtype} "
                           f"{source.shape}.")
        source = Image.fromarray(source)
    if isinstance(source, Image.Image):
        check_size(*source.size, what)
        return source
    try:
        im = Image.open(Path(source))
    except Image.DecompressionBombError:
        raise gr.Error(f"The {what} is far too large to decode; the limit is {MAX_SIDE} pixels a side.") from None
    except (UnidentifiedImageError, OSError, ValueError):
        name = Path(str(source)).name
        raise gr.Error(f"{name!r} is not an image file. Upload the {what} as {IMAGE_FORMATS}.") from None
    check_size(*im.size, what)
    try:
        im.load()
    except (OSError, ValueError, SyntaxError):
        raise gr.Error(f"The {what} file is truncated or corrupt; save it again as PNG and upload it.") from None
    return im


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB: greyscale and 16-bit rescaled, CMYK converted, alpha over white."""
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        a = np.asarray(im, np.float64)
        lo, hi = float(a.min()), float(a.max())
        im = Image.fromarray(np.round((a - lo) / max(hi - lo, 1e-12) * 255).astype(np.uint8))
    if im.mode == "P" and "transparency" in im.info or im.mode in ("RGBA", "LA", "PA", "La", "RGBa"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def load_rgb(source, what: str = "image") -> Image.Image:
    """Open, check and convert an uploaded image to RGB."""
    return to_rgb(open_image(source, what))


def load_rgba(source, what: str = "edit") -> Image.Image:
    """Open and check an RGBA edit; images without alpha count as fully opaque."""
    im = open_image(source, what)
    if im.mode in ("I", "I;16", "I;16B", "I;16L", "F", "CMYK"):
        im = to_rgb(im)
    return im.convert("RGBA")


# ------------------------------------------------------------------ label maps
def hex_colors(num_classes: int) -> list[str]:
    return ["#%02x%02x%02x" % tuple(int(v) for v in c) for c in synthetic.palette(num_classes)]


def legend(class_names) -> str:
    """Markdown: each class id with its colour swatch and name."""
    cells = [
        f"<span style='display:inline-block;width:0.9em;height:0.9em;background:{c};border:1px solid "
        f"#888'></span> {i} {n}"
        for i, (c, n) in enumerate(zip(hex_colors(len(class_names)), class_names))
    ]
    return "Classes: " + " &nbsp; ".join(cells)


def colors_to_labels(rgb: np.ndarray, num_classes: int, opaque: np.ndarray | None = None,
                     what: str = "label map") -> np.ndarray:
    """Exact palette colours [H, W, 3] -> class ids; unknown colours are refused."""
    pal = synthetic.palette(num_classes).astype(np.int64)
    key = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
    pal_key = (pal[:, 0] << 16) | (pal[:, 1] << 8) | pal[:, 2]
    order = np.argsort(pal_key)
    pos = np.clip(np.searchsorted(pal_key[order], key), 0, len(pal_key) - 1)
    labels = order[pos]
    known = pal_key[labels] == key
    if opaque is not None:
        labels = np.where(opaque, labels, 0)
        known |= ~opaque
    if not known.all():
        bad = np.unique(rgb[~known].reshape(-1, 3), axis=0)[:5]
        shown = ", ".join("#%02x%02x%02x" % tuple(int(v) for v in c) for c in bad)
        raise gr.Error(
            f"The {what} has {int((~known).sum())} pixels in colours that are not class colours of this model "
            f"(e.g. {shown}). Use only the palette colours of classes 0-{num_classes - 1} shown in the legend, "
            "or upload an index PNG whose pixel values are class ids. Save it as PNG: JPEG changes colours."
        )
    return labels.astype(np.int64)


def load_label_map(source, num_classes: int, what: str = "label map") -> np.ndarray:
    """An index PNG (mode L/P/I: pixel value = class id) or an RGB(A) image in the app's palette
    (transparent pixels = background) -> int64 [H, W]; ids >= num_classes are refused."""
    im = open_image(source, what)
    if im.mode == "1":
        labels = np.asarray(im, np.int64)
    elif im.mode in ("L", "P", "I", "I;16", "I;16B", "I;16L"):
        labels = np.asarray(im).astype(np.int64)
    elif im.mode in ("RGB", "RGBA", "LA", "PA"):
        arr = np.asarray(im.convert("RGBA"))
        labels = colors_to_labels(arr[..., :3], num_classes, arr[..., 3] >= 128, what)
    else:
        raise gr.Error(f"The {what} is a {im.mode} image; upload an index PNG (pixel value = class id) or a PNG "
                       "coloured with the class palette.")
    bad = np.unique(labels[(labels < 0) | (labels >= num_classes)])
    if bad.size:
        raise gr.Error(
            f"The {what} contains class ids {', '.join(map(str, bad[:8].tolist()))} but this model knows "
            f"classes 0-{num_classes - 1}. Relabel those pixels with one of the known classes."
        )
    return labels


def painted_labels(editor_value, num_classes: int) -> np.ndarray | None:
    """A gr.ImageEditor value (numpy RGBA layers painted with the class palette) -> an RGB label
    map in the palette (unpainted pixels background), or None when nothing was painted.

    Brush strokes are anti-aliased, so each painted pixel takes its nearest palette colour."""
    if not editor_value or not editor_value.get("layers"):
        return None
    layers = [np.asarray(layer) for layer in editor_value["layers"] if layer is not None]
    if not layers:
        return None
    canvas = np.zeros((*layers[0].shape[:2], 4), np.float64)
    for layer in layers:  # "over" compositing of the paint layers, bottom first
        if layer.shape[:2] != canvas.shape[:2] or layer.ndim != 3 or layer.shape[-1] != 4:
            continue
        a = layer[..., 3:] / 255.0
        canvas[..., :3] = layer[..., :3] * a + canvas[..., :3] * (1 - a)
        canvas[..., 3:] = a + canvas[..., 3:] * (1 - a)
    painted = canvas[..., 3] >= 0.5
    if not painted.any():
        return None
    pal = synthetic.palette(num_classes).astype(np.float64)
    rgb = canvas[..., :3] / np.maximum(canvas[..., 3:], 1e-6)
    nearest = ((rgb[:, :, None, :] - pal[None, None]) ** 2).sum(-1).argmin(-1)
    labels = np.where(painted, nearest, 0)
    return colorize(labels, num_classes)


def painted_or_skip(editor_value, num_classes: int):
    """For an editor's input event: the painted label map, or leave the target as it is."""
    painted = painted_labels(editor_value, num_classes)
    return gr.skip() if painted is None else painted


def merged_layers(editor_value) -> np.ndarray | None:
    """The paint layers of a gr.ImageEditor value, composited into one RGBA uint8 image."""
    if not editor_value or not editor_value.get("layers"):
        return None
    out = None
    for layer in editor_value["layers"]:
        if layer is None:
            continue
        im = Image.fromarray(np.asarray(layer, np.uint8)).convert("RGBA")
        out = im if out is None or out.size != im.size else Image.alpha_composite(out, im)
    if out is None or np.asarray(out)[..., 3].max() == 0:
        return None
    return np.asarray(out)


def overlay(image: Image.Image, labels: np.ndarray, num_classes: int, alpha: float = 0.55) -> np.ndarray:
    """Class colours blended over the image (background pixels left as they are), at most
    DISPLAY_SIDE pixels a side (labels resized with the nearest neighbour)."""
    image, labels = display_size(image, labels)
    rgb = np.asarray(image.convert("RGB"), np.float32)
    colors = colorize(labels, num_classes).astype(np.float32)
    out = np.where(labels[..., None] > 0, (1 - alpha) * rgb + alpha * colors, rgb)
    return np.round(out).astype(np.uint8)


def display_size(image: Image.Image, labels: np.ndarray | None = None):
    """The image (and its label map) scaled down to at most DISPLAY_SIDE pixels a side for the
    browser: a 4096 x 4096 result would cost seconds of PNG encoding and hundreds of MB per view."""
    scale = DISPLAY_SIDE / max(image.size)
    if scale >= 1:
        return image, labels
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    if labels is not None:
        labels = np.asarray(Image.fromarray(labels.astype(np.int32)).resize(size, Image.NEAREST)).astype(labels.dtype)
    return image.resize(size, Image.BILINEAR), labels


# ------------------------------------------------------------------ videos and numbers
def library_error(error: ValueError, sentence: bool = False) -> gr.Error:
    """A library's ValueError (no full stop: it may be embedded) as the app shows it; `sentence`:
    its first letter capitalised too (where it is the whole message, not a clause)."""
    text = str(error).strip().rstrip(".")
    return gr.Error((text[:1].upper() + text[1:] if sentence else text) + ".")


def load_cocosnet_map(pipe, source, what: str = "input map"):
    """A CoCosNet input (or exemplar) map as the app receives it -> what the pipeline reads, by the
    kind the model asks for (`cocosnet.inputs.input_kind`): label maps through the app's reader
    (size limits, index PNG or class colours), edge maps as greyscale images, poses (JSON text)
    through cocosnet.inputs; every refusal a gr.Error saying what to give."""
    kind = cocosnet_inputs.input_kind(pipe)
    if kind in cocosnet_inputs.LABEL_KINDS:
        face = "face " if kind == "face" else ""
        return load_label_map(source, cocosnet_inputs.num_classes(pipe), f"{what} ({face}label map)")
    if kind == "edge":
        return load_rgb(source, f"{what} (edge map)").convert("L")
    try:
        return cocosnet_inputs.load_input_map(pipe, source, "input pose" if what == "input map" else what)
    except ValueError as e:
        raise library_error(e, sentence=True) from None


def load_cocosnet_exemplar_map(pipe, source):
    """The exemplar's own map for the CoCosNet models that read it (the authors' maskmix), else None."""
    if not pipe.needs_exemplar_map:
        return None
    if source is None:
        raise gr.Error("This CoCosNet checkpoint also needs the exemplar's own map: upload it as the exemplar's label "
                       "map (same kind as the input map, the layout of the exemplar photo).")
    return load_cocosnet_map(pipe, source, "exemplar map")


def seed(value, name: str) -> int:
    if value is None or not float(value).is_integer() or not 0 <= float(value) <= MAX_SEED:
        raise gr.Error(f"The {name} must be a whole number between 0 and {MAX_SEED}.")
    return int(value)


def fraction(value, name: str, lo: float = 0.0, hi: float = 1.0) -> float:
    if value is None or not lo <= float(value) <= hi:
        raise gr.Error(f"The {name} must be between {lo:g} and {hi:g}.")
    return float(value)


def paths(files) -> list:
    """gr.File(file_count='multiple') value -> list of paths (None -> [])."""
    if not files:
        return []
    files = files if isinstance(files, list) else [files]
    return [f if isinstance(f, (str, Path)) else getattr(f, "name", f) for f in files]
