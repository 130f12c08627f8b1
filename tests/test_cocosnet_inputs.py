"""The authors' CelebA-HQ edge (15 channels) and DeepFashion pose (20 channels) input encodings
(cocosnet/encodings.py; keypoints read by cocosnet/openpose.py), checked against the loader outputs
in ../shared/fixtures/cocosnet-official (README section 7); the pipeline reading face label maps and keypoints for
such models; the app's
exemplar tab offering those inputs (and the exemplar map of maskmix models), hostile input included.
"""

from __future__ import annotations

import json
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from PIL import Image

from cocosnet import build_pipeline, encodings
from cocosnet.encodings import (FACE_DISTANCE_PARTS, FACE_PARTS, POSE_LIMBS, distance_map, face_edge_channels,
                                part_boundary, pose_channels, render_pose)
from cocosnet.openpose import BODY25_TO_COCO18, parse_keypoints

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "cocosnet-official"
needs_fixtures = pytest.mark.skipif(
    not (FIXTURES / "README.md").is_file(),
    reason=f"CoCosNet official fixtures not found at {FIXTURES}: put the cocosnet-official fixture folder there to "
           "run these checks",
)


def fixture_poses():
    """[(keypoints (18, 2) with NaN for missing, the loader's uint8 (20, 256, 256))] for input 0, 1 and exemplar
    0, 1."""
    extra = json.loads((FIXTURES / "trace_deepfashion.json").read_text())["synthetic_input_extra"]
    arrays = np.load(FIXTURES / "inputs_deepfashion.npz")
    loader = [arrays["label_k_u8"][0], arrays["label_k_u8"][1], arrays["label_ref_k_u8"][0],
              arrays["label_ref_k_u8"][1]]
    out = []
    for k, channels in enumerate(loader):
        candidate = np.asarray(extra[f"pose_candidate_{k}"], np.float64)
        subset = np.asarray(extra[f"pose_subset_{k}"])[:18].astype(int)
        keypoints = np.full((18, 2), np.nan)
        keypoints[subset >= 0] = candidate[subset[subset >= 0], :2]
        out.append((keypoints, channels))
    return out


def openpose(keypoints: np.ndarray, **extra) -> dict:
    flat = [float(v) for p in keypoints for v in ((0, 0, 0) if np.isnan(p).any() else (p[0], p[1], 0.9))]
    return {"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": flat}], **extra}


def small_pipeline(channels: int, resolution: int = 64, **overrides):
    torch.manual_seed(0)
    maskmix = channels == encodings.FACE_EDGE_CHANNELS  # as the authors' models: edges maskmix, pose patch warp
    pipe = build_pipeline("micro", input_kind="channels", input_channels=channels, resolution=resolution,
                          maskmix=maskmix,
                          warp_mode="bilinear" if maskmix else "patch", **overrides)
    pipe.correspondence_network.eval()
    pipe.generator.eval()
    return pipe


def face_labels(size: int = 64, shift: int = 0) -> np.ndarray:
    """A small CelebAMask-HQ style map: hair, skin, brows, eyes, nose, mouth parts, neck."""
    ids = {n: i for i, n in enumerate(FACE_PARTS)}
    lab = np.zeros((size, size), np.int64)
    yy, xx = np.mgrid[:size, :size] / size
    lab[yy < 0.3] = ids["hair"]
    lab[((yy - 0.5) / 0.38) ** 2 + ((xx - 0.5 - shift / size) / 0.3) ** 2 < 1] = ids["skin"]
    lab[(yy > 0.85) & (np.abs(xx - 0.5) < 0.15)] = ids["neck"]
    for side, x in (("l", 0.38), ("r", 0.62)):
        lab[(np.abs(yy - 0.36) < 0.02) & (np.abs(xx - x) < 0.07)] = ids[f"{side}_brow"]
        lab[((yy - 0.43) / 0.03) ** 2 + ((xx - x) / 0.06) ** 2 < 1] = ids[f"{side}_eye"]
    lab[(np.abs(yy - 0.55) < 0.06) & (np.abs(xx - 0.5) < 0.04)] = ids["nose"]
    lab[(np.abs(yy - 0.68) < 0.015) & (np.abs(xx - 0.5) < 0.1)] = ids["u_lip"]
    lab[(np.abs(yy - 0.7) < 0.008) & (np.abs(xx - 0.5) < 0.1)] = ids["mouth"]
    lab[(np.abs(yy - 0.725) < 0.015) & (np.abs(xx - 0.5) < 0.1)] = ids["l_lip"]
    return lab


# ------------------------------------------------------------------ builders vs the fixture
@needs_fixtures
def test_pose_channels_reproduce_the_authors_loader_bit_for_bit():
    """All four recorded poses (two with missing points and a point below the canvas): the RGB
    skeleton and all 17 limb distance maps equal the loader's uint8 channels exactly."""
    for keypoints, loader in fixture_poses():
        ours = pose_channels(keypoints, (256, 256))
        assert ours.dtype == np.float32 and ours.shape == (20, 256, 256)
        assert np.array_equal(np.round(ours * 255).astype(np.uint8), loader)
    # and through the pipeline, from OpenPose JSON text, as the model's input tensor (float32 recipe of README
    # section 7)
    keypoints, loader = fixture_poses()[1]
    pipe = small_pipeline(20, resolution=256)
    x, size = pipe.encode_input_map(json.dumps(openpose(keypoints)))
    assert size == (256, 256) and torch.equal(x[0], torch.from_numpy(loader.astype(np.float32) / np.float32(255)))


@needs_fixtures
def test_face_distance_and_edge_channels_follow_the_authors_recipe():
    """The fixture ships the 15 channels but not the label maps they came from, so the parts are
    checked one by one: each part's boundary, read back as the part-edge pixels (channel 14) where
    its distance map is 0, gives that distance map again through `distance_map` (exact on >= 70 % of
    pixels, never off by more than 1/255: neighbouring parts' edges within 2 px are read back too);
    channel 0 holds channel 14 plus Canny edges of the exemplar photo."""
    arrays = np.load(FIXTURES / "inputs_celebahqedge.npz")
    exact, total = 0, 0
    for name in ("label_k_u8", "label_ref_k_u8"):
        for sample in arrays[name]:
            assert set(np.unique(sample[0])) <= {0, 255} and set(np.unique(sample[14])) <= {0, 255}
            edges = sample[14] > 0
            assert not (edges & (sample[0] == 0)).any()  # part edges are part of "all edges"
            for channel in sample[1:14]:
                boundary = edges & (channel == 0)
                ours = distance_map(boundary)
                if not boundary.any():
                    assert (channel == 255).all()  # an absent part (no glasses)
                diff = np.abs(ours.astype(int) - channel)
                assert diff.max() <= 1
                exact += int((diff == 0).sum())
                total += diff.size
    assert exact / total >= 0.7, exact / total
    # Canny edges of the exemplar photo outside the inner face make up the rest of channel 0
    from skimage import feature

    for photo, sample in zip(arrays["ref_rgb_u8"], arrays["label_ref_k_u8"]):
        extra = (sample[0] > 0) & (sample[14] == 0)
        canny = feature.canny(np.asarray(Image.fromarray(photo).convert("L")))
        assert extra.sum() > 500 and (extra & canny).sum() / extra.sum() >= 0.85


# ------------------------------------------------------------------ builders on their own
def test_face_edge_channels_layout_and_dense_distance_reference():
    lab = face_labels(40)
    ch = face_edge_channels(lab)
    assert ch.dtype == np.float32 and ch.shape == (15, 40, 40)
    assert np.array_equal(np.round(ch * 255) / 255, ch)  # multiples of 1/255, as the loader's uint8
    boundaries = [part_boundary(lab == FACE_PARTS.index(p)) for p in FACE_DISTANCE_PARTS]
    assert np.array_equal(ch[14], np.any(boundaries, 0)) and np.array_equal(ch[0], ch[14])  # no photo: no Canny edges
    assert (ch[FACE_DISTANCE_PARTS.index("eye_g") + 1] == 1).all()  # no glasses: a channel of ones
    # channel of the nose: a slow dense L1 reference
    nose = boundaries[FACE_DISTANCE_PARTS.index("nose")]
    ys, xs = np.nonzero(nose)
    yy, xx = np.mgrid[:40, :40]
    d = (np.abs(yy[..., None] - ys) + np.abs(xx[..., None] - xs)).min(-1)
    assert np.array_equal(ch[FACE_DISTANCE_PARTS.index("nose") + 1], np.minimum(d // 3, 255).astype(np.float32) / 255)
    # a part boundary lies on both sides of the change
    square = np.zeros((10, 10), bool)
    square[3:6, 3:6] = True
    # the 3x3 block but its centre, and the 12 pixels 4-adjacent to it outside
    assert part_boundary(square).sum() == 8 + 12
    # with a photo: Canny edges join channel 0, but never inside the inner face parts
    rng = np.random.default_rng(0)
    photo = (rng.random((40, 40)) > 0.5).astype(np.uint8) * 255
    with_photo = face_edge_channels(lab, photo)
    added = (with_photo[0] > 0) & (ch[0] == 0)
    inner = np.isin(lab, [FACE_PARTS.index(p) for p in FACE_DISTANCE_PARTS if p != "hair"])
    assert added.any() and not (added & inner).any() and np.array_equal(with_photo[1:], ch[1:])


def test_face_edge_channels_refuse_bad_maps_with_the_fix():
    with pytest.raises(ValueError, match=r"unknown face part ids \[19, 40\]: use the CelebAMask-HQ ids 0..18 \(0 "
                                         r"background, 1 hair"):
        face_edge_channels(np.array([[19, 40] * 8] * 16))
    with pytest.raises(ValueError, match="must be an integer array"):
        face_edge_channels(np.zeros((16, 16, 3), np.float32))
    with pytest.raises(ValueError, match="too small"):
        face_edge_channels(np.zeros((4, 30), np.int64))
    with pytest.raises(ValueError, match="face photo must be a uint8 array"):
        face_edge_channels(face_labels(32), np.zeros((32, 32), np.float64))


def test_pose_rendering_properties():
    points = np.array([[128, 40], [128, 72], [100, 74], [92, 120], [88, 165], [156, 74], [164, 120], [168, 165],
                       [110, 160], [108, 205], [106, 248], [146, 160], [148, 205], [150, 248], [121, 33], [135, 33],
                       [112, 38], [144, 38]], float)
    ch = pose_channels(points, (256, 256))
    assert ch.shape == (20, 256, 256) and np.array_equal(np.round(ch * 255) / 255, ch)
    # integer shifts move the drawing exactly (away from the borders)
    moved = pose_channels(points + [7, -5], (256, 256))
    assert np.array_equal(moved[:3, 20:-20, 20:-20], np.roll(ch[:3], (-5, 7), (1, 2))[:, 20:-20, 20:-20])
    # each limb's distance map is 0 on its segment ends and grows along the L1 distance
    for c, (a, b) in enumerate(POSE_LIMBS, start=3):
        for x, y in (points[a], points[b]):
            assert ch[c, int(y), int(x)] == 0
    # a missing point: its circle and limbs vanish, their distance maps are ones
    missing = points.copy()
    missing[4] = -1  # r_wrist
    ch2 = pose_channels(missing, (256, 256))
    assert (ch2[3 + POSE_LIMBS.index((3, 4))] == 1).all() and not ch2[:3, 165, 88].any()
    assert np.array_equal(ch2[3 + POSE_LIMBS.index((2, 3))], ch[3 + POSE_LIMBS.index((2, 3))])
    # the same pose from every accepted form
    conf = np.concatenate([missing, np.ones((18, 1))], 1)
    conf[4] = [500, 500, 0]  # confidence 0 = missing
    body25 = np.zeros((25, 3))
    body25[list(BODY25_TO_COCO18)] = conf
    for form in (conf, conf.ravel().tolist(), body25.ravel(), openpose(np.where(conf[:, 2:] > 0, conf[:, :2], np.nan)),
                 json.dumps({"people": [{"pose_keypoints_2d": conf.ravel().tolist()}]})):
        assert np.array_equal(pose_channels(form, (256, 256)), ch2)


def test_keypoints_refused_with_the_fix(tmp_path):
    with pytest.raises(ValueError, match=r"need the 18 OpenPose COCO-18 keypoints .* got shape \(17, 2\)"):
        parse_keypoints(np.zeros((17, 2)))
    with pytest.raises(ValueError, match=r"not valid JSON \(Expecting ',' delimiter"):
        parse_keypoints('{"people": [1 2]}')
    with pytest.raises(ValueError, match=r'OpenPose JSON needs "people": \[\{"pose_keypoints_2d"'):
        parse_keypoints({"people": []})
    with pytest.raises(ValueError, match="keypoints must be numbers"):
        parse_keypoints([["a", "b"]] * 18)
    with pytest.raises(ValueError, match="no keypoints file at"):
        parse_keypoints(str(tmp_path / "none.json"))
    binary = tmp_path / "pose.png"
    Image.new("RGB", (20, 20), (200, 10, 10)).save(binary)
    with pytest.raises(ValueError, match="'pose.png' is not a text file"):
        parse_keypoints(binary)
    with pytest.raises(ValueError, match=r"keypoint 3 \(r_elbow\) at \(9000, 10\) lies far outside the 64x64 canvas"):
        pose_channels([[10, 10]] * 3 + [[9000, 10]] + [[10, 10]] * 14, (64, 64))
    with pytest.raises(ValueError, match="canvas size must be"):
        render_pose(np.zeros((18, 2)), (4, 64))


# ------------------------------------------------------------------ the pipeline
def test_pipeline_builds_the_channels_for_face_edge_and_pose_models(tmp_path):
    assert build_pipeline("micro").channel_encoding is None
    assert build_pipeline("micro", input_kind="channels", input_channels=7).channel_encoding is None
    face, pose = small_pipeline(15), small_pipeline(20)
    assert (face.channel_encoding, face.needs_exemplar_map, pose.channel_encoding,
            pose.needs_exemplar_map) == ("face_edges", True, "pose", False)
    exemplar = Image.fromarray(np.random.default_rng(1).integers(0, 255, (50, 40, 3), np.uint8))
    # face: a label map (array, index PNG path) == the raw channels from face_edge_channels; the exemplar's map too
    # (at the model's resolution: raw arrays of another size are resized bilinear, built ones as the authors'
    # loader does)
    lab, lab_ex = face_labels(64), face_labels(64, shift=4)
    index_png = tmp_path / "face.png"
    Image.fromarray(lab.astype(np.uint8), mode="L").save(index_png)
    a = face.translate(lab, exemplar, exemplar_map=lab_ex, return_warped=True)
    b = face.translate(index_png, exemplar, exemplar_map=face_edge_channels(lab_ex), return_warped=True)
    c = face.translate(face_edge_channels(lab), exemplar, exemplar_map=lab_ex)
    assert a.image.size == (64, 64) and np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert face.translate(face_labels(48), exemplar, exemplar_map=lab_ex).image.size == (48, 48)
    assert np.array_equal(np.asarray(a.image), np.asarray(c.image))
    with pytest.raises(ValueError, match="needs the exemplar's own map"):
        face.translate(lab, exemplar)
    with pytest.raises(ValueError, match=r"unknown class ids \[19\]"):
        face.translate(np.full((16, 16), 19), exemplar, exemplar_map=lab_ex)
    photo = np.asarray(exemplar.resize((64, 64)))
    d = face.translate({"labels": lab, "photo": photo}, exemplar, exemplar_map=lab_ex)
    channels = face.translate(face_edge_channels(lab, photo), exemplar, exemplar_map=lab_ex)
    assert np.array_equal(np.asarray(d.image), np.asarray(channels.image))
    # pose: array, OpenPose dict / text / file == the raw channels; the canvas size from the JSON sets the output size
    keypoints = np.array([[30, 10], [30, 18], [24, 18], [22, 30], [21, 41], [37, 18], [39, 30], [40, 41],
                          [26, 40], [26, 51],
                          [25, 61], [35, 40], [36, 51], [36, 61], [28, 8], [32, 8], [26, 9], [34, 9]], float)
    js = tmp_path / "pose.json"
    js.write_text(json.dumps(openpose(keypoints)))
    p = pose.translate(keypoints, exemplar, return_warped=True)
    assert p.image.size == (64, 64)
    for form in (openpose(keypoints), str(js), js.read_text(), pose_channels(keypoints, (64, 64))):
        assert np.array_equal(np.asarray(pose.translate(form, exemplar).image), np.asarray(p.image))
    big = pose.translate(openpose(keypoints * 2, canvas_height=128, canvas_width=100), exemplar)
    assert big.image.size == (100, 128)
    with pytest.raises(ValueError, match="give both \"canvas_height\" and \"canvas_width\""):
        pose.translate(openpose(keypoints, canvas_height=128), exemplar)
    with pytest.raises(ValueError, match=r"float array \[20, H, W\]"):
        pose.translate(np.zeros((3, 64, 64), np.float32), exemplar)
    (px, py), = pose.match_points(keypoints, exemplar, [(30, 18)], heatmaps=False).points
    assert 0 <= px < 40 and 0 <= py < 50


# ------------------------------------------------------------------ the app's exemplar tab
def test_app_tab_face_edge_model_with_exemplar_map(tmp_path):
    from demos import exemplar_translation as et
    from demos import inputs

    pipe = small_pipeline(15)
    assert et.input_kind(pipe) == "face" and et.num_classes(pipe) == 19 and et.class_names(pipe) == FACE_PARTS
    with gr.Blocks():
        et.create_demo(pipe)
    rows, _ = et.example_rows(pipe)
    assert len(rows[0]) == 3  # input, exemplar, the exemplar's own map
    label_map, photo, exemplar_map = rows[1]
    image, warped, (flow_file,) = et.translate(pipe, label_map, photo, exemplar_map)
    lab = inputs.load_label_map(label_map, 19)
    expected = pipe.translate(lab, Image.open(photo).convert("RGB"),
                              exemplar_map=inputs.load_label_map(exemplar_map, 19), return_warped=True)
    assert np.array_equal(np.asarray(image), np.asarray(expected.image))
    assert np.array_equal(np.asarray(warped), np.asarray(expected.warped_exemplar))
    assert set(np.unique(lab)) <= set(range(19)) and 9 in lab  # the nose has its CelebAMask-HQ id
    assert np.load(flow_file).shape[-1] == 2
    view, text = et.correspondence(pipe, label_map, photo, 60, 60, exemplar_map)  # the exemplar map reaches the matcher
    assert view.shape[0] == 256 and "(60, 60) in A" in text
    # hostile: no exemplar map, ids beyond 18, a text file as the map
    with pytest.raises(gr.Error, match="also needs the exemplar's own map"):
        et.translate(pipe, label_map, photo, None)
    ids = tmp_path / "ids.png"
    Image.fromarray(np.full((32, 32), 23, np.uint8), mode="L").save(ids)
    with pytest.raises(gr.Error, match=r"contains class ids 23 but this model knows classes 0-18"):
        et.translate(pipe, ids, photo, exemplar_map)
    text = tmp_path / "map.png"
    text.write_text("not an image")
    with pytest.raises(gr.Error, match="'map.png' is not an image file. Upload the exemplar map"):
        et.translate(pipe, label_map, photo, text)


def test_app_tab_pose_model_and_its_api(tmp_path):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from demos import examples, exemplar_translation as et

    pipe = small_pipeline(20)
    assert et.input_kind(pipe) == "pose" and not pipe.needs_exemplar_map
    photo = examples.path("exemplar_0.png")
    image, warped, _ = et.translate(pipe, et.EXAMPLE_POSES[1], photo)
    expected = pipe.translate(json.loads(et.EXAMPLE_POSES[1]), Image.open(photo).convert("RGB"), return_warped=True)
    assert image.size == (256, 256) and np.array_equal(np.asarray(image), np.asarray(expected.image))
    preview = et.pose_preview(pipe, et.EXAMPLE_POSES[2])
    assert np.array_equal(preview,
                          render_pose(json.loads(et.EXAMPLE_POSES[2]),
                                      (256, 256))[0]) and preview[38, 112].sum() == 0  # r_ear absent
    assert et.pose_preview(pipe, "{broken") is None
    view, text = et.correspondence(pipe, et.EXAMPLE_POSES[0], photo, 128, 72)  # a point of the pose canvas
    pose_dict = json.loads(et.EXAMPLE_POSES[0])
    (px, py), = pipe.match_points(pose_dict, Image.open(photo).convert("RGB"), [(128, 72)], heatmaps=False).points
    assert view.shape[0] == 256 and f"(128, 72) in A -> ({px:.1f}, {py:.1f}) in B" in text
    with pytest.raises(gr.Error, match="outside the 256x256 input"):
        et.correspondence(pipe, et.EXAMPLE_POSES[0], photo, 300, 10)
    for bad, message in (("", "No input pose given: paste OpenPose keypoints JSON"),
                         ("nonsense", r"The input pose is not valid JSON \(Expecting value at line 1, column 1\)"),
                         ('{"people": [{"pose_keypoints_2d": [1, 2, 1]}]}',
                          r"need the 18 OpenPose COCO-18 keypoints .* or 54 / 75 flat numbers; got 3 numbers"),
                         (json.dumps([[0, 0, 0]] * 18), "has none of the 18 keypoints"),
                         (json.dumps([[1e7, 5]] * 18), r"keypoint 0 \(nose\) at \(1e\+07, 5\) lies far outside"),
                         ("x" * 1_000_001, "longer than 1000 kB")):
        with pytest.raises(gr.Error, match=message):
            et.translate(pipe, bad, photo)
    binary = tmp_path / "pose.json"
    binary.write_bytes(b"\xff\xfe\x00binary")
    with pytest.raises(gr.Error, match="'pose.json' is not a text file"):
        et.read_pose_file(binary)
    binary.write_text(et.EXAMPLE_POSES[0])
    assert et.read_pose_file(binary) == et.EXAMPLE_POSES[0]
    # the named endpoint keeps (input_map, exemplar, ...): here the keypoints text first
    with gr.Blocks() as demo:
        et.create_demo(pipe)
    demo.queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = Client(url, verbose=False)
        image_path, _, _ = client.predict(et.EXAMPLE_POSES[1], handle_file(photo), api_name="/translate")
        assert np.array_equal(np.asarray(Image.open(image_path).convert("RGB")), np.asarray(expected.image))
        with pytest.raises(AppError, match="has none of the 18 keypoints"):
            client.predict(json.dumps({"people": [{"pose_keypoints_2d": [0] * 54}]}), handle_file(photo),
                           api_name="/translate")
    finally:
        demo.close()


# ------------------------------------------------------------------ cocosnet.inputs: what the app asks for, read
def test_input_kinds_classes_and_names_follow_the_checkpoint():
    import synthetic
    from cocosnet import inputs, tiny_random_pipeline

    mask, edge = tiny_random_pipeline(), tiny_random_pipeline(input_kind="edge")
    face, pose = small_pipeline(encodings.FACE_EDGE_CHANNELS), small_pipeline(encodings.POSE_CHANNELS)
    raw = small_pipeline(7)
    kinds = [inputs.input_kind(p) for p in (None, mask, edge, face, pose, raw)]
    assert kinds == ["mask", "mask", "edge", "face", "pose", "channels"]
    assert [inputs.num_classes(p) for p in (None, mask, face)] == [12, 12, 19]
    assert inputs.class_names(face) == FACE_PARTS
    assert inputs.class_names(None) == synthetic.category("faces").class_names
    assert inputs.class_names(tiny_random_pipeline(num_classes=5)) == tuple(f"class {i}" for i in range(5))
    # each synthetic face part is the CelebAMask-HQ part of the same name
    assert inputs.SYNTHETIC_FACE_PARTS == synthetic.category("faces").class_names
    assert [FACE_PARTS[i] for i in inputs.FACE_TO_CELEBA[[1, 4, 9, 11]]] == ["skin", "l_ear", "r_eye", "mouth"]
    assert [inputs.pose_preview(p, inputs.EXAMPLE_POSES[0]) is None for p in (mask, pose)] == [True, False]
    assert inputs.pose_preview(pose, inputs.EXAMPLE_POSES[1]).shape == (256, 256, 3)


def test_input_maps_load_by_kind_and_refuse_with_the_fix(tmp_path):
    from cocosnet import inputs, tiny_random_pipeline

    mask = tiny_random_pipeline()
    ids = np.zeros((20, 24), np.int64)
    ids[5:15, 6:18] = 3
    Image.fromarray(ids.astype(np.uint8), "L").save(tmp_path / "ids.png")
    assert np.array_equal(inputs.load_input_map(mask, str(tmp_path / "ids.png")), ids)
    palette = np.arange(12 * 3, dtype=np.uint8).reshape(12, 3) * 7
    coloured = np.concatenate([palette[ids], np.full((20, 24, 1), 255, np.uint8)], -1)
    coloured[0, 0, 3] = 0  # transparent: background
    assert np.array_equal(inputs.load_input_map(mask, Image.fromarray(coloured), palette=palette), ids)
    coloured[1, 1, :3] = (1, 2, 3)
    with pytest.raises(ValueError, match="1 pixels in colours that are not class colours"):
        inputs.load_input_map(mask, coloured, palette=palette)
    with pytest.raises(ValueError, match="give an index PNG"):
        inputs.load_input_map(mask, coloured)
    with pytest.raises(ValueError, match=r"unknown class ids \[12\]"):
        inputs.load_input_map(mask, ids + 9)
    with pytest.raises(ValueError, match="not an image file"):
        inputs.load_input_map(mask, str(tmp_path / "missing.png"))
    edge = inputs.load_input_map(tiny_random_pipeline(input_kind="edge"), np.zeros((16, 20, 4), np.uint8))
    assert edge.mode == "L" and np.asarray(edge).min() == 255  # transparent over white
    pose = small_pipeline(encodings.POSE_CHANNELS)
    loaded = inputs.load_input_map(pose, inputs.EXAMPLE_POSES[2])
    assert loaded["canvas_height"] == 256 and np.isnan(parse_keypoints(loaded)[16]).all()  # the hidden right ear
    with pytest.raises(ValueError, match="the input pose is not valid JSON"):
        inputs.load_input_map(pose, "{people")
    with pytest.raises(ValueError, match="none of the 18 keypoints"):
        inputs.load_pose(pose, json.dumps(openpose(np.full((18, 2), np.nan))))
    with pytest.raises(ValueError, match="raw input channels that cannot be built"):
        inputs.load_input_map(small_pipeline(7), ids)
    face = small_pipeline(encodings.FACE_EDGE_CHANNELS)
    assert inputs.load_exemplar_map(mask, None) is None
    with pytest.raises(ValueError, match="also needs the exemplar's own map"):
        inputs.load_exemplar_map(face, None)
    assert inputs.load_exemplar_map(face, face_labels()).shape == (64, 64)
