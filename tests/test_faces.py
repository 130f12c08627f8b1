"""faces/: alignment against the synthetic faces' exact landmarks, paste as align's inverse, and dlib on real photos.

The alignment tests need no dlib: a synthetic face is rendered at a known similarity (rotation +-30 degrees,
scale 0.5-2x the crop, shift), its eye and mouth centres come from the renderer's keypoints, and `align` must
put them at the frame's canonical positions, worked out here from the recipe's description for an upright face.
"""

import doctest
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

import faces
import synthetic
from faces import warp
from faces.align import CHANGED_MARGIN, FEATHER
from faces.detect import predictor_path
from faces.frames import SYNTHETIC_POINTS

try:  # without loading the model at collection time
    import dlib  # noqa: F401

    DLIB_REASON = None if os.path.isfile(predictor_path()) else "the 68-point model file is missing"
except (ImportError, RuntimeError) as e:  # dlib-bin / face-recognition-models not installed
    DLIB_REASON = f"dlib or its 68-point model is missing ({e}); pip install -r requirements.txt"
needs_dlib = pytest.mark.skipif(DLIB_REASON is not None, reason=DLIB_REASON or "")

CAT = synthetic.category("faces")
CROP = 128  # crop side for the synthetic tests; the faces' recipe squares span 0.5-2x of it in the photos
PHOTO = 512


def _kp(name):
    return np.array(CAT.keypoints[CAT.keypoint_names.index(name)])


# The template's eye centres (means of the outer and inner corners) and mouth centre, canonical units.
EYE_LEFT = (_kp("left_eye_outer") + _kp("left_eye_inner")) / 2
EYE_RIGHT = (_kp("right_eye_outer") + _kp("right_eye_inner")) / 2
MOUTH = (_kp("left_mouth_corner") + _kp("right_mouth_corner")) / 2


def _points(keypoints) -> np.ndarray:
    """(eye_left, eye_right, mouth) from the renderer's keypoints (continuous pixels -> pixel indices)."""
    kp = {n: k - 0.5 for n, k in zip(CAT.keypoint_names, keypoints)}
    return np.array([(kp["left_eye_outer"] + kp["left_eye_inner"]) / 2,
                     (kp["right_eye_outer"] + kp["right_eye_inner"]) / 2,
                     (kp["left_mouth_corner"] + kp["right_mouth_corner"]) / 2])


@pytest.fixture(scope="module")
def posed():
    """Six noise-free synthetic faces in 512 px photos at random similarities, no shape change, no yaw."""
    rng = np.random.default_rng(24)
    n = 6
    square = 2 * max(2 * abs(EYE_RIGHT[0] - EYE_LEFT[0]) / 2,
                     1.8 * (MOUTH[1] - EYE_LEFT[1]) / 2)  # recipe side, canonical
    rel = np.geomspace(0.5, 2.0, n)  # the recipe square's side in the photo, in crop sides
    scale = rel * CROP / (square / 2 * PHOTO)  # the renderer's scale (canonical half-width 1 -> scale * PHOTO / 2 px)
    structure = np.zeros((n, len(synthetic.structure_names(CAT))), np.float32)
    structure[:, 0] = np.radians(rng.uniform(-30, 30, n))
    structure[:, 1] = np.log(scale)
    structure[:, 2:4] = rng.uniform(-1, 1, (n, 2)) * np.clip(1 - scale, 0, None)[:, None] * 0.7
    texture = synthetic.sample_textures("faces", n, seed=5)
    texture[:, synthetic.texture_names(CAT).index("noise_sigma")] = 0
    return synthetic.render("faces", structure, texture, PHOTO), rel


def _expected_unit(frame: str) -> np.ndarray:
    """Canonical (eye_left, eye_right, mouth) in unit crop coordinates, for the template's proportions.

    For an upright face (eyes level, mouth straight below) the recipe's square is axis-aligned, centred
    0.1 eye-to-mouth below the eyes, with half-side max(2 |eye_to_eye|, 1.8 |eye_to_mouth|); a frame puts it
    at centre (cx, cy) with half-side h in unit coordinates.
    """
    if frame == "synthetic":  # the renderer's own frame: canonical u -> (u + 1) / 2
        return (np.array([EYE_LEFT, EYE_RIGHT, MOUTH]) + 1) / 2
    (cx, cy), h = {"ffhq": ((0.5, 0.5), 0.5), "celebahq": ((0.5, 0.5), 0.5), "celeba": ((0.5, 0.5), 0.3)}[frame]
    eye_avg = (EYE_LEFT + EYE_RIGHT) / 2
    half = max(2 * (EYE_RIGHT[0] - EYE_LEFT[0]), 1.8 * (MOUTH[1] - eye_avg[1]))
    center = eye_avg + 0.1 * (MOUTH - eye_avg)
    return np.array([cx, cy]) + (np.array([EYE_LEFT, EYE_RIGHT, MOUTH]) - center) / half * h


def test_doctests():
    assert doctest.testmod(faces, raise_on_error=False).failed == 0


def test_synthetic_frame_points_are_the_renderers():
    """faces.frames.SYNTHETIC_POINTS (a copy, so faces/ needs no torch) = the template's keypoints."""
    assert np.allclose(SYNTHETIC_POINTS, (np.array([EYE_LEFT, EYE_RIGHT, MOUTH]) + 1) / 2, atol=1e-9)


@pytest.mark.parametrize("frame", ["ffhq", "celebahq", "celeba", "synthetic"])
def test_align_puts_eyes_and_mouth_at_the_frames_positions(posed, frame):
    batch, rel = posed
    expected = _expected_unit(frame) * CROP - 0.5  # unit -> pixel indices
    for i in range(len(batch)):
        points = _points(batch.keypoints[i])
        aligned = faces.align(batch.image[i], faces.Face(*map(tuple, points)), CROP, frame)
        assert aligned.image.size == (CROP, CROP)
        got = warp.apply(aligned.matrix, points)
        assert np.abs(got - expected).max() < 1.0, (frame, i, rel[i], got, expected)
        crop_face = aligned.face
        assert np.abs(np.array([crop_face.eye_left, crop_face.eye_right, crop_face.mouth]) - expected).max() < 1.0


def test_synthetic_frame_crop_is_the_identity_pose_render(posed):
    """The image itself, not only the matrix: aligned to the synthetic frame, a posed face looks like the
    same face rendered at the identity pose (same texture), inside the face."""
    batch, _ = posed
    identity = synthetic.render("faces", np.zeros_like(batch.structure), batch.texture, CROP)
    for i in range(len(batch)):
        aligned = faces.align(batch.image[i], faces.Face(*map(tuple, _points(batch.keypoints[i]))), CROP, "synthetic")
        inside = identity.labels[i] == CAT.class_names.index("skin")
        error = np.abs(np.asarray(aligned.image, float) - identity.image[i])[inside].mean()
        assert error < 4.0, (i, error)  # grey levels; a one-pixel shift gives ~9 here


def _face_interior(batch, i, aligned) -> np.ndarray:
    """Crop pixels on the face (every part but hair and neck) and off the paste mask's soft border."""
    labels = warp.resample(Image.fromarray(batch.labels[i].astype(np.uint8)), np.linalg.inv(aligned.matrix),
                           (CROP, CROP), labels=True)
    keep = [CAT.class_names.index(n) for n in CAT.class_names if n not in ("background", "hair", "neck")]
    inside = np.isin(np.asarray(labels), keep)
    border = int(np.ceil(FEATHER * CROP))
    inside[:border], inside[-border:], inside[:, :border], inside[:, -border:] = False, False, False, False
    return inside


@pytest.mark.parametrize("frame", ["ffhq", "synthetic"])
def test_paste_inverts_align(posed, frame):
    """crop -> photo -> crop: within 1/255 mean error inside the face (a result that differs from the
    crop everywhere: its negative)."""
    batch, rel = posed
    for i in range(len(batch)):
        face = faces.Face(*map(tuple, _points(batch.keypoints[i])))
        aligned = faces.align(batch.image[i], face, CROP, frame)
        result = 255 - np.asarray(aligned.image)
        pasted = aligned.paste(Image.fromarray(result))
        assert isinstance(pasted, Image.Image) and pasted.size == (PHOTO, PHOTO)
        again = faces.align(pasted, face, CROP, frame)
        inside = _face_interior(batch, i, aligned)
        assert inside.sum() > 0.2 * CROP * CROP
        error = np.abs(np.asarray(again.image, float) - result)[inside].mean() / 255
        assert error < 1 / 255, (frame, i, rel[i], error * 255)
        # Far from the crop, the photo is untouched.
        corners = warp.apply(np.linalg.inv(aligned.matrix), [(0, 0), (CROP, 0), (0, CROP), (CROP, CROP)])
        outside = np.ones((PHOTO, PHOTO), bool)
        x0, y0 = np.clip(np.floor(corners.min(0)).astype(int) - 2, 0, PHOTO)
        x1, y1 = np.clip(np.ceil(corners.max(0)).astype(int) + 2, 0, PHOTO)
        outside[y0:y1, x0:x1] = False
        assert np.array_equal(np.asarray(pasted)[outside], batch.image[i][outside])


def test_paste_touches_only_what_the_result_changed(posed):
    """An edit that leaves most of the crop alone: the photo is untouched (bit for bit) away from the
    edit, shows the edit on it, and a result equal to the crop gives the photo back as it was."""
    batch, _ = posed
    i = 0
    aligned = faces.align(batch.image[i], faces.Face(*map(tuple, _points(batch.keypoints[i]))), CROP, "ffhq")
    assert np.array_equal(np.asarray(aligned.paste(aligned.image)), batch.image[i])
    edited = np.array(aligned.image)
    edited[40:60, 30:90] = (255, 0, 255)
    pasted = np.asarray(aligned.paste(Image.fromarray(edited)))
    to_photo = np.linalg.inv(aligned.matrix)
    reach = CHANGED_MARGIN + 3  # the mask's growth and softening, and the bicubic support
    quad = warp.apply(to_photo, [(30 - reach, 40 - reach), (90 + reach, 40 - reach), (30 - reach, 60 + reach),
                                 (90 + reach, 60 + reach)])
    near = np.zeros((PHOTO, PHOTO), bool)
    (x0, y0), (x1, y1) = np.floor(quad.min(0)).astype(int), np.ceil(quad.max(0)).astype(int)
    near[max(y0, 0):y1 + 1, max(x0, 0):x1 + 1] = True
    assert np.array_equal(pasted[~near], batch.image[i][~near])
    centre = np.round(warp.apply(to_photo, [(59.5, 49.5)])[0]).astype(int)
    assert np.abs(pasted[centre[1], centre[0]].astype(int) - (255, 0, 255)).max() <= 2
    again = np.asarray(faces.align(pasted, aligned.face.transformed(to_photo), CROP, "ffhq").image, float)
    assert np.abs(again[44:56, 34:86] - (255, 0, 255)).mean() < 2


def test_paste_labels_nearest_and_results_of_another_size(posed):
    batch, _ = posed
    i = 0
    aligned = faces.align(batch.image[i], faces.Face(*map(tuple, _points(batch.keypoints[i]))), CROP, "ffhq")
    crop_labels = np.asarray(warp.resample(Image.fromarray(batch.labels[i].astype(np.uint8)),
                                           np.linalg.inv(aligned.matrix), (CROP, CROP), labels=True)).astype(np.int64)
    onto = np.full((PHOTO, PHOTO), 99, np.int64)
    pasted = aligned.paste(crop_labels, onto=onto)
    assert pasted.dtype == np.int64 and pasted.shape == (PHOTO, PHOTO)
    assert set(np.unique(pasted)) <= set(np.unique(crop_labels)) | {99}  # no blended ids
    covered = pasted != 99
    agree = (pasted == batch.labels[i])[covered].mean()
    assert agree > 0.97, agree
    # Outside the crop's quad, `onto` stays; the quad's area matches the crop's in photo pixels.
    area = CROP * CROP / abs(np.linalg.det(aligned.matrix[:2, :2]))
    assert abs(covered.sum() / area - 1) < 0.03
    # A palette image comes back as a palette image of the photo's size.
    p_img = Image.fromarray(crop_labels.astype(np.uint8))
    p_img.putpalette(faces.FACE_PALETTE.ravel().tolist())
    back = aligned.paste(p_img)
    assert back.mode == "P" and back.size == (PHOTO, PHOTO)
    assert np.array_equal(np.asarray(back), np.where(covered, pasted, 0)) and back.getpalette() == p_img.getpalette()
    # A 64 px result for a 128 px crop: resized to the crop first; white onto black fades at the border.
    white = np.full((64, 64, 3), 255, np.uint8)
    out = aligned.paste(white, onto=np.zeros((PHOTO, PHOTO, 3), np.uint8))
    assert out.shape == (PHOTO, PHOTO, 3)
    centre = np.round(warp.apply(np.linalg.inv(aligned.matrix), [(CROP - 1) / 2] * 2)).astype(int)
    assert out[centre[1], centre[0]].min() == 255
    assert 0 < ((out[..., 0] > 0) & (out[..., 0] < 255)).sum()  # a feathered edge
    assert np.count_nonzero(out[..., 0]) / area < 1.02


def test_center_crop_and_its_paste():
    photo = np.asarray(Image.fromarray(synthetic.sample("faces", 1, 96, seed=1).image[0]).resize((150, 100)))
    crop = faces.center_crop(photo, 64)
    assert crop.image.size == (64, 64) and crop.face is None
    assert np.allclose(warp.apply(crop.matrix, [(74.5, 49.5)]), [(31.5, 31.5)])
    back = crop.paste(255 - np.asarray(crop.image))
    assert np.abs(np.asarray(back, float) - (255 - photo))[10:-10, 35:-35].mean() < 3


def test_bad_input_says_what_to_do():
    face = faces.Face((10.0, 10.0), (30.0, 10.0), (20.0, 30.0))
    image = np.zeros((40, 40, 3), np.uint8)
    with pytest.raises(ValueError, match="ffhq, celebahq, celeba, synthetic"):
        faces.align(image, face, 64, "wild")
    with pytest.raises(ValueError, match="size must be an int"):
        faces.align(image, face, 4)
    with pytest.raises(ValueError, match="distinct"):
        faces.align(image, faces.Face((1.0, 1.0), (1.0, 1.0), (1.0, 1.0)), 64)
    with pytest.raises(ValueError, match="outside the 40x40 photo"):
        faces.align(image, faces.Face((-500.0, 10.0), (-480.0, 10.0), (-490.0, 30.0)), 64)
    with pytest.raises(ValueError, match="uint8"):
        faces.align(np.zeros((40, 40, 3), np.float64), face, 64)
    with pytest.raises(ValueError, match="no landmarks"):
        faces.parsing_from_landmarks(face, (40, 40))


# ------------------------------------------------------------------------------------------ dlib on real photos


def _astronaut_rotated(angle: float, side: int = 800):
    """The astronaut turned by `angle` degrees (counter-clockwise) in the middle of a larger black canvas."""
    from skimage import data

    photo = data.astronaut()
    c = (photo.shape[1] - 1) / 2
    canvas_to_photo = warp.rotation(-angle, (c, c)) @ warp.translation(c - (side - 1) / 2, c - (side - 1) / 2)
    return photo, warp.resample(Image.fromarray(photo), canvas_to_photo, (side, side)), np.linalg.inv(canvas_to_photo)


@needs_dlib
@pytest.mark.parametrize("angle", [20, 40, -40, 55, 90])
def test_rotated_astronaut_gives_the_upright_crop(angle):
    """20 degrees: the issue's check. +-40: dlib's rolled-face filters, landmarks from an upright patch;
    55 and 90: found on a copy turned 30 and 60 degrees."""
    photo, rotated, photo_to_canvas = _astronaut_rotated(angle)
    upright = faces.align_largest(photo, 256, "celebahq")
    turned = faces.align_largest(rotated, 256, "celebahq")
    face = faces.detect(photo)[0]
    for name in ("eye_left", "eye_right"):
        point = getattr(face, name)  # the same point of the face, in both crops
        a = warp.apply(upright.matrix, point)
        b = warp.apply(turned.matrix @ photo_to_canvas, point)
        assert np.hypot(*(a - b)) < 3.0, (angle, name, a, b)
    difference = np.abs(np.asarray(upright.image, float) - np.asarray(turned.image, float))[32:-32, 32:-32].mean()
    assert difference < 12, difference


@needs_dlib
def test_astronaut_face_and_landmarks():
    from skimage import data

    found = faces.detect(data.astronaut())
    assert found and found[0].landmarks.shape == (68, 2)
    x0, y0, x1, y1 = found[0].box
    face = found[0]
    assert x0 < face.eye_left[0] < face.eye_right[0] < x1 and y0 < face.eye_left[1] < face.mouth[1] < y1 + 20
    assert len(found) == 1
    # At 1024 px inside a 1400 px canvas, dlib's own threshold (0) also finds her suit's badge, with a box as
    # large as her face's and a margin of ~0.15: min_score drops it, min_score=0 keeps it (largest first).
    big = Image.fromarray(data.astronaut()).resize((1024, 1024), Image.LANCZOS)
    canvas = warp.resample(big, warp.translation(511.5 - 699.5, 511.5 - 699.5), (1400, 1400))
    everything = faces.detect(canvas, min_score=0.0)
    assert len(everything) == 2 and everything[0].area >= everything[1].area
    (kept,) = faces.detect(canvas)
    assert min(f.score for f in everything) < faces.detect.__kwdefaults__["min_score"] < kept.score
    assert np.abs(np.array(kept.eye_left) - (np.array(face.eye_left) * 2 + 0.5 + 188)).max() < 6  # her eye


@needs_dlib
def test_no_face_gets_the_message():
    from skimage import data

    assert faces.detect(data.coffee()) == []
    with pytest.raises(faces.NoFaceError, match="No face was found.*centre crop") as info:
        faces.align_largest(data.coffee(), 256)
    assert isinstance(info.value, ValueError)


@needs_dlib
def test_parsing_has_the_parts_in_place():
    from skimage import data

    face = faces.detect(data.astronaut())[0]
    labels = faces.parsing_from_landmarks(face, (512, 512, 3))
    ids = {n: i for i, n in enumerate(faces.FACE_PARTS)}
    lm = face.landmarks
    present = set(np.unique(labels))
    assert {ids[n] for n in ("skin", "l_brow", "r_brow", "l_eye", "r_eye", "nose", "u_lip", "l_lip")} <= present
    assert not {ids["hair"], ids["neck"], ids["l_ear"], ids["r_ear"]} & present  # landmarks cannot say: background

    def at(p):
        return labels[int(round(p[1])), int(round(p[0]))]

    assert at(face.eye_left) == ids["l_eye"] and at(face.eye_right) == ids["r_eye"]
    near = [labels[int(round(y)) - 1:int(round(y)) + 2, int(round(x)) - 1:int(round(x)) + 2] for x, y in lm[36:48]]
    assert all((n == ids["l_eye"]).any() or (n == ids["r_eye"]).any() for n in near)  # eye labels cover the landmarks
    assert at(lm[30]) == ids["nose"] and at(lm[19] + (0, 2)) == ids["l_brow"]
    rows = {n: np.nonzero(labels == ids[n])[0].mean() for n in ("l_brow", "l_eye", "nose", "u_lip", "l_lip")}
    assert rows["l_brow"] < rows["l_eye"] < rows["nose"] < rows["u_lip"] < rows["l_lip"]
    assert at((lm[2] + lm[31]) / 2) == ids["skin"]  # the cheek
    eye_avg = (np.array(face.eye_left) + face.eye_right) / 2
    forehead = eye_avg + 0.6 * (eye_avg - face.mouth)  # above the brows, under the forehead estimate
    assert at(forehead) == ids["skin"] and labels[0, 0] == 0 and at(lm[8] + (0, 10)) == 0


@needs_dlib
def test_follow_tracks_a_turning_face_and_lets_go():
    """Video frames: the astronaut turning 10 degrees and moving 5 px per frame; `follow` from the last
    frame's face finds her landmarks where they truly are (mapped from the upright photo's)."""
    from skimage import data

    photo = Image.fromarray(data.astronaut())
    upright = faces.detect(photo)[0].landmarks
    previous, c = None, 255.5
    for k, angle in enumerate(range(0, 40, 10)):
        frame_to_photo = warp.rotation(-angle, (c, c)) @ warp.translation(c - 349.5 - 4 * k, c - 349.5 + 3 * k)
        frame = warp.resample(photo, frame_to_photo, (700, 700))
        truth = warp.apply(np.linalg.inv(frame_to_photo), upright)
        face = faces.detect(frame)[0] if previous is None else faces.follow(frame, previous)
        assert face is not None and np.abs(face.landmarks - truth).mean() < 1.5, (angle, face)
        previous = face
    assert faces.follow(data.coffee(), previous) is None  # the face is gone: detect again
    with pytest.raises(ValueError, match="from detect"):
        faces.follow(data.coffee(), faces.Face((10.0, 10.0), (30.0, 10.0), (20.0, 30.0)))


@needs_dlib
def test_two_threads_share_the_predictor_and_detect_the_same():
    from skimage import data

    detect_module = sys.modules["faces.detect"]
    detect_module._predictor = None  # load again, from two threads at once
    photo = data.astronaut()
    results, loaded = [None] * 2, [None] * 2

    def work(k):
        loaded[k] = detect_module.models()
        for _ in range(2):
            results[k] = faces.detect(photo)[0].landmarks

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(m[1] is loaded[0][1] for m in loaded)  # one predictor
    assert loaded[0][0] is not loaded[1][0]  # a detector per thread
    assert all(np.array_equal(r, results[0]) for r in results)


def _cli(capsys, *args) -> tuple[int, str]:
    """`python -m faces ARGS` in this process: (exit code, stderr)."""
    from faces.__main__ import main

    try:
        code = main(list(args))
    except SystemExit as e:  # argparse
        code = e.code
    return code, capsys.readouterr().err


@needs_dlib
def test_cli(tmp_path, capsys):
    from skimage import data

    Image.fromarray(data.astronaut()).save(tmp_path / "astronaut.png")
    Image.fromarray(data.coffee()).save(tmp_path / "coffee.png")
    run = subprocess.run([sys.executable, "-m", "faces", "align", str(tmp_path / "astronaut.png"), "--size", "128",
                          "--frame", "celebahq", "--output", str(tmp_path / "aligned.png")],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert Image.open(tmp_path / "aligned.png").size == (128, 128)
    assert _cli(capsys, "parse", str(tmp_path / "astronaut.png"), "--output", str(tmp_path / "labels.png"))[0] == 0
    labels = Image.open(tmp_path / "labels.png")
    assert labels.mode == "P" and labels.size == (512, 512) and np.asarray(labels).max() == 12
    assert _cli(capsys, "parse", str(tmp_path / "astronaut.png"), "--frame", "celebahq", "--size", "64",
                "--output", str(tmp_path / "crop_labels.png"))[0] == 0
    assert Image.open(tmp_path / "crop_labels.png").size == (64, 64)
    for bad in (["align", str(tmp_path / "coffee.png"), "--output", str(tmp_path / "x.png")],
                ["parse", str(tmp_path / "missing.png"), "--output", str(tmp_path / "x.png")],
                ["align", str(tmp_path / "astronaut.png"), "--size", "2", "--output", str(tmp_path / "x.png")],
                ["align", str(tmp_path / "astronaut.png"), "--frame", "wild", "--output", str(tmp_path / "x.png")],
                ["align", str(tmp_path / "astronaut.png"), "--output", str(tmp_path / "no" / "x.png")]):
        code, err = _cli(capsys, *bad)
        assert code == 2 and 1 <= len(err.strip().splitlines()) <= 2, (bad, err)
        assert "coffee" not in bad[1] or "no face found" in err and "centre crop" in err
    code, _ = _cli(capsys, "align", str(tmp_path / "coffee.png"), "--fallback", "center", "--output",
                   str(tmp_path / "c.png"))
    assert code == 0 and Image.open(tmp_path / "c.png").size == (256, 256)


@needs_dlib
def test_face_track_follows_with_landmarks_and_checks_with_the_detector(monkeypatch):
    """FaceTrack: the astronaut turning 2 degrees and moving 3 px a frame; the predictor alone between the
    detector's checks (every 4th frame here) keeps her landmarks where they truly are; after a cut to a
    photo without a face, the track lets go by the next check at the latest."""
    from skimage import data

    import faces.track as track_module

    photo = Image.fromarray(data.astronaut())
    upright = faces.detect(photo)[0].landmarks
    searched, follow = [], track_module.follow

    def counted(*args, **kwargs):
        searched.append(kwargs.get("search", True))
        return follow(*args, **kwargs)

    monkeypatch.setattr(track_module, "follow", counted)
    track, c = faces.FaceTrack(check_every=4), 255.5
    for k in range(9):
        frame_to_photo = warp.rotation(-2 * k, (c, c)) @ warp.translation(c - 299.5 - 3 * k, c - 299.5 + 2 * k)
        face = track(warp.resample(photo, frame_to_photo, (600, 600)))
        truth = warp.apply(np.linalg.inv(frame_to_photo), upright)
        assert face is not None and np.abs(face.landmarks - truth).mean() < 1.5, (k, face)
    assert searched == [False, False, False, True] * 2  # frames 2-9: three by landmarks, then the detector
    lost = [track(data.coffee()) for _ in range(4)]
    assert lost[-1] is None
    with pytest.raises(ValueError, match="check_every"):
        faces.FaceTrack(check_every=0)
