"""A face photo into a model's frame and the model's result back onto the photo."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageChops, ImageFilter

from . import warp
from .detect import Face, as_rgb_array, detect
from .frames import get_frame

EXACT_PASTE_PIXELS = 1 << 19
FEATHER = 0.06  # width of the paste mask's soft edge, as a fraction of the crop's side
CHANGED_MARGIN = 4  # px of the crop: how far around a result's changed pixels the paste reaches (and softens)


class NoFaceError(ValueError):
    """No face was found; the message offers the centre crop (`center_crop`)."""


def _check_size(size) -> int:
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or not 8 <= size <= 4096:
        raise ValueError(f"size must be an int in [8, 4096] (the crop's side in pixels), got {size!r}")
    return int(size)


def _is_label_map(result) -> bool:
    if isinstance(result, Image.Image):
        return result.mode in ("L", "P", "I", "I;16")
    array = np.asarray(result)
    return array.ndim == 2 and (np.issubdtype(array.dtype, np.integer) or array.dtype == bool)


def _to_image(result, labels: bool) -> tuple[Image.Image, bool]:
    """(PIL image, was_array) of a result: RGB for pictures, L/P/I for label maps."""
    if isinstance(result, Image.Image):
        return (result if labels else result.convert("RGB")), False
    array = np.asarray(result)
    if labels:
        if array.ndim != 2 or array.min(initial=0) < 0:
            raise ValueError(f"a label map must be a 2-D array of non-negative ids, got {array.dtype} {array.shape}")
        return Image.fromarray(array.astype(np.uint8 if array.max(initial=0) < 256 else np.int32)), True
    if np.issubdtype(array.dtype, np.floating):  # floats in [0, 1]
        array = (np.clip(array, 0, 1) * 255).round().astype(np.uint8)
    return Image.fromarray(as_rgb_array(array)), True


@dataclass(eq=False)
class Aligned:
    """An aligned crop and the way back.

    image: the crop (PIL RGB, size x size). matrix: 3x3, photo pixel indices -> crop pixel
    indices. frame: its name. face: the face in crop coordinates (None for a centre crop).
    photo: the photo it came from (PIL RGB), what `paste` draws onto by default.
    """

    image: Image.Image
    matrix: np.ndarray
    frame: str
    face: Face | None
    photo: Image.Image

    @property
    def size(self) -> int:
        return self.image.width

    def paste(self, result, onto=None, *, labels: bool | None = None, feather: float = FEATHER):
        """The inverse warp: `result` (in this crop's frame, any size) drawn onto the photo.

        Pictures (RGB) are resized to the crop, warped back bicubically (antialiased when the
        photo's face is smaller than the crop) and blended over `onto` (default: the photo)
        through a mask that fades out over `feather` x the crop's side at its border. Where the
        result is the aligned crop itself (an edit that left those pixels alone), the photo stays
        as it was: pasting them would only blur it through two warps. The mask is then the changed
        pixels, grown by CHANGED_MARGIN and softened, and only their part of the photo is
        touched (a small edit on a video frame costs a fraction of a full paste). Label maps
        (integer 2-D arrays, or PIL images in mode L/P/I) are resized and warped with the nearest
        neighbour and replace `onto`'s labels inside the crop, no feathering; `onto` defaults to
        zeros (background) of the photo's size. `labels` overrides the guess from the type.

        Returns the same kind as `result`: a PIL image (P keeps its palette) or a numpy array.
        """
        is_labels = _is_label_map(result) if labels is None else labels
        crop, as_array = _to_image(result, is_labels)
        w, h = self.photo.size
        size = self.size
        if crop.size != (size, size):
            crop = crop.resize((size, size), Image.NEAREST if is_labels else Image.LANCZOS)
        changed = None if is_labels else _changed(crop, self.image)
        if changed is not None and changed[1] is None:  # nothing changed: the photo as it is
            base = np.array(self.photo if onto is None else _to_image(onto, False)[0])
            return base if as_array else Image.fromarray(base)
        # Only the photo's part the crop (or its changed part) covers is touched.
        cx0, cy0, cx1, cy1 = (0, 0, size, size) if changed is None else changed[1]
        inverse = np.linalg.inv(self.matrix)
        corners = warp.apply(inverse, [(cx0 - 0.5, cy0 - 0.5), (cx1 - 0.5, cy0 - 0.5), (cx0 - 0.5, cy1 - 0.5),
                                       (cx1 - 0.5, cy1 - 0.5)])
        x0, y0 = np.clip(np.floor(corners.min(0)).astype(int), 0, (w, h))
        x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int) + 1, 0, (w, h))
        region_to_crop = self.matrix @ warp.translation(x0, y0)
        region_size = (int(x1 - x0), int(y1 - y0))
        if is_labels:
            base = np.zeros((h, w), np.asarray(crop).dtype) if onto is None else np.array(_to_image(onto, True)[0])
            if base.shape != (h, w):
                raise ValueError(f"onto must be a label map of the photo's size {w}x{h}, got "
                                 f"{base.shape[1]}x{base.shape[0]}")
            if region_size[0] > 0 and region_size[1] > 0:
                inside = np.asarray(warp.resample(Image.new("L", (size, size), 1), region_to_crop, region_size,
                                                  labels=True)).astype(bool)
                pasted = np.asarray(warp.resample(crop, region_to_crop, region_size, labels=True))
                base[y0:y1, x0:x1][inside] = pasted[inside]
            if as_array:
                return base.astype(np.asarray(result).dtype)
            out = Image.fromarray(base)
            if crop.mode == "P":  # an L image with a palette becomes P
                out.putpalette(crop.getpalette())
            return out
        base = np.array(self.photo if onto is None else _to_image(onto, False)[0])  # uint8 copy
        if base.shape[:2] != (h, w):
            raise ValueError(f"onto must be a photo of the photo's size {w}x{h}, got {base.shape[1]}x{base.shape[0]}")
        if region_size[0] > 0 and region_size[1] > 0:
            ramp = np.minimum(np.arange(size) + 0.5, size - 0.5 - np.arange(size)) / max(feather * size, 1e-6)
            ramp = np.clip(ramp, 0, 1)
            ramp = ramp * ramp * (3 - 2 * ramp)  # smoothstep
            mask = np.minimum(ramp[:, None], ramp[None, :])
            mask = Image.fromarray((mask * (1 if changed is None else changed[0]) * 255).round().astype(np.uint8))
            alpha = np.asarray(warp.resample(mask, region_to_crop, region_size, fast=True), np.float32)[..., None] / 255
            # Float warps up to ~0.5 Mpx; above, one 8-bit call (3x faster, +-0.5 grey level).
            exact = region_size[0] * region_size[1] <= EXACT_PASTE_PIXELS
            pasted = warp.resample_array(crop, region_to_crop, region_size, exact=exact)
            region = base[y0:y1, x0:x1].astype(np.float32)
            base[y0:y1, x0:x1] = (region + (pasted - region) * alpha).round().clip(0, 255)
        return base if as_array else Image.fromarray(base)


def _changed(crop: Image.Image, aligned: Image.Image):
    """Where an RGB result differs from the aligned crop: None when it differs nearly everywhere or has
    another size, else (soft mask in [0, 1] (size, size), the box (x0, y0, x1, y1) the mask covers,
    or None when nothing changed). The changed pixels are grown by CHANGED_MARGIN / 2 and the mask
    fades out over as much again (box filters; Pillow's C loops: ~0.5 ms at 256 px)."""
    if crop.size != aligned.size:
        return None
    r, g, b = ImageChops.difference(crop, aligned).split()
    differs = ImageChops.lighter(ImageChops.lighter(r, g), b).point(lambda v: 255 if v else 0)
    unchanged = differs.histogram()[0]
    if unchanged < 0.1 * crop.width * crop.height:
        return None
    if unchanged == crop.width * crop.height:
        return np.zeros((crop.height, crop.width), np.float32), None
    half = CHANGED_MARGIN // 2
    grown = differs.filter(ImageFilter.BoxBlur(half)).point(lambda v: 255 if v else 0)
    soft = ImageChops.lighter(grown.filter(ImageFilter.BoxBlur(half)), differs)
    x0, y0, x1, y1 = soft.getbbox()
    box = (max(x0 - 2, 0), max(y0 - 2, 0), min(x1 + 2, crop.width), min(y1 + 2, crop.height))  # + bicubic support
    return np.asarray(soft, np.float32) / 255, box


def align(image, face: Face, size: int = 256, frame: str = "ffhq", *, exact: bool = True) -> Aligned:
    """The face in a model's frame: the FFHQ / CelebA-HQ square from its eye and mouth centres.

    Args:
        image: PIL image or uint8 array (H, W[, 3]).
        face: a `Face` from `detect`, or `Face(eye_left, eye_right, mouth)` from known points.
        size: the crop's side in pixels.
        frame: "ffhq" / "celebahq" (CoordGAN celebA, CoCosNet celebahq and celebahqedge),
            "celeba" (GANgealing celeba: a looser crop), "synthetic" (the bundled face models).
        exact: False trades +-0.5 grey level for ~1.6x less time where the crop is not shrunk (video
            frames: `faces.warp.resample_array`).
    Returns:
        `Aligned`: image, matrix (photo -> crop), frame, face (in the crop), photo, paste().
    """
    size = _check_size(size)
    photo = Image.fromarray(as_rgb_array(image))
    crop_to_photo = get_frame(frame).crop_to_photo(face.eye_left, face.eye_right, face.mouth, size)
    corners = warp.apply(crop_to_photo,
                         [(-0.5, -0.5), (size - 0.5, -0.5), (-0.5, size - 0.5), (size - 0.5, size - 0.5)])
    (x0, y0), (x1, y1) = corners.min(0), corners.max(0)
    if x1 < -0.5 or y1 < -0.5 or x0 > photo.width - 0.5 or y0 > photo.height - 0.5:
        raise ValueError(f"the face's crop ({x0:.0f}, {y0:.0f})-({x1:.0f}, {y1:.0f}) lies outside the "
                         f"{photo.width}x{photo.height} photo: give the eye and mouth points in this photo's pixels")
    crop = warp.resample(photo, crop_to_photo, (size, size), pad="reflect", exact=exact)
    matrix = np.linalg.inv(crop_to_photo)
    return Aligned(crop, matrix, frame, face.transformed(matrix), photo)


def center_crop(image, size: int = 256) -> Aligned:
    """The largest centred square, resized to `size`: the fallback when no face is found."""
    size = _check_size(size)
    photo = Image.fromarray(as_rgb_array(image))
    w, h = photo.size
    side = min(w, h)
    # crop index q -> photo index: the square's continuous corner (w - side) / 2 + (q + 0.5) side / size
    k = side / size
    crop_to_photo = np.array([[k, 0, (w - side) / 2 + 0.5 * k - 0.5], [0, k, (h - side) / 2 + 0.5 * k - 0.5],
                              [0, 0, 1.0]])
    crop = warp.resample(photo, crop_to_photo, (size, size))
    return Aligned(crop, np.linalg.inv(crop_to_photo), "center", None, photo)


def align_largest(image, size: int = 256, frame: str = "ffhq") -> Aligned:
    """`align` on the largest face `detect` finds; `NoFaceError` (a ValueError) when there is none."""
    faces = detect(image)
    if not faces:
        raise NoFaceError("No face was found in the photo (dlib's frontal face detector, upright or turned up to "
                          "90 degrees). "
                          "Use a photo with a clearer, larger frontal face, or the centre crop instead "
                          "(faces.center_crop(image, size)).")
    return align(image, faces[0], size, frame)
