"""Face photos through the app (demos/face_photos.py, issue #24): every face tab driven through
gradio_client with a real face photo (scikit-image's astronaut) and a photo with no face (its
coffee cup). The app (conftest's face_app_server) runs tiny random pipelines marked as the bundled models, so
their frame is the synthetic faces' and "Align the face" is on."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image

faces = pytest.importorskip("faces")
try:
    faces.detect(np.zeros((32, 32, 3), np.uint8))
except Exception as e:  # dlib missing: requirements.txt installs dlib-bin
    pytest.skip(f"dlib is not usable here ({e})", allow_module_level=True)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    import skimage.data

    folder = tmp_path_factory.mktemp("photos")
    paths = {"face": folder / "astronaut.png", "cup": folder / "coffee.png"}
    Image.fromarray(skimage.data.astronaut()).resize((384, 384), Image.LANCZOS).save(paths["face"])
    Image.fromarray(skimage.data.coffee()).resize((300, 200), Image.LANCZOS).save(paths["cup"])
    return paths


@pytest.fixture(scope="module")
def client(face_app_server):
    from gradio_client import Client

    return Client(face_app_server.local_url, verbose=False)


def file(path):
    from gradio_client import handle_file

    return handle_file(str(path))


def test_align_face_endpoint(client, photos):
    crop, info = client.predict(file(photos["face"]), "synthetic", 128, api_name="/align_face")
    assert Image.open(crop).size == (128, 128) and info["frame"] == "synthetic"
    eyes = np.array([info["face"]["in_crop"]["eye_left"], info["face"]["in_crop"]["eye_right"]])
    assert abs(eyes[0, 1] - eyes[1, 1]) < 1.0 and 20 < eyes[1, 0] - eyes[0, 0] < 60  # level, in the middle third
    matrix = np.array(info["matrix"])
    in_photo = np.array(info["face"]["in_photo"]["eye_left"] + [1.0])
    np.testing.assert_allclose((matrix @ in_photo)[:2], eyes[0], atol=0.02)  # the matrix maps photo -> crop
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match="No face was found"):
        client.predict(file(photos["cup"]), "ffhq", 256, api_name="/align_face")
    crop, info = client.predict(file(photos["cup"]), "center", 64, api_name="/align_face")
    assert Image.open(crop).size == (64, 64) and info["face"] is None


def test_label_propagation_pastes_labels_back_onto_the_photo(client, photos):
    from demos import examples

    ref, labels = examples.path("face_0.png"), examples.path("face_0_labels.png")
    overlay, _, gallery, files = client.predict(file(ref), file(labels), file(photos["face"]),
                                                api_name="/propagate_labels")
    assert Image.open(overlay).size == (384, 384)  # the photo's size, labels pasted back
    assert any("aligned crop" in (item.get("caption") or "") for item in gallery)
    on_photo = np.asarray(Image.open(files[0]))
    assert on_photo.shape == (384, 384) and (on_photo > 0).any() and (on_photo[:8] == 0).all()  # 0 outside the crop
    overlay, _, gallery, files = client.predict(file(ref), file(labels), file(photos["cup"]),
                                                api_name="/propagate_labels")
    assert Image.open(overlay).size == (300, 200) and len(gallery) == 1  # no face: the photo as it is, no crop


def test_edit_propagation_on_a_face_photo(client, photos):
    from demos import examples

    edit = examples.path("edit_glasses.png")
    edited, gallery, _ = client.predict(file(edit), file(photos["face"]), api_name="/propagate_edit")
    assert Image.open(edited).size == (384, 384)
    assert [item["caption"] for item in gallery][:3] == ["aligned crop 1", "congealed 1", "edited 1"]
    edited, gallery, _ = client.predict(file(edit), file(photos["cup"]), api_name="/propagate_edit")
    assert Image.open(edited).size == (300, 200) and len(gallery) == 2


def test_appearance_transfer_pastes_onto_the_content_photo(client, photos):
    result, _, files = client.predict(file(photos["face"]), file(photos["cup"]), 3, api_name="/transfer_appearance")
    assert Image.open(result).size == (384, 384)
    assert json.loads(Path(files[0]).read_text())["content_aligned"] is True
    result, _, files = client.predict(file(photos["cup"]), file(photos["face"]), 3, api_name="/transfer_appearance")
    assert json.loads(Path(files[0]).read_text())["content_aligned"] is False and Image.open(result).size == (300, 200)


def test_a_face_photo_becomes_the_input_map_and_translates(client, photos):
    from gradio_client.exceptions import AppError

    from demos import inputs

    input_map, crop = client.predict(file(photos["face"]), api_name="/input_from_photo")
    ids = inputs.load_label_map(input_map, 12, "map")  # the bundled classes (synthetic faces), in the class colours
    assert Image.open(crop).size == (256, 256) and ids.shape == (256, 256)
    assert {1, 8, 9, 10, 11} <= set(np.unique(ids))  # skin, both eyes, nose, mouth drawn from the landmarks
    image, warped, _ = client.predict(file(input_map), file(photos["face"]), api_name="/translate")
    assert Image.open(image).size == (256, 256)
    with pytest.raises(AppError, match="No face was found in the photo"):
        client.predict(file(photos["cup"]), api_name="/input_from_photo")
    image, _, _ = client.predict(file(input_map), file(photos["cup"]), api_name="/translate")  # no face: as it is
    assert Image.open(image).size == (256, 256)


def test_models_endpoint_says_which_weights_each_tab_runs(client):
    info = client.predict(api_name="/models")
    assert set(info) == {"coordgan", "gangealing", "cocosnet", "coat"}
    assert all(entry["kind"] == "bundled" and "synthetic faces" in entry["line"] for entry in info.values())


def test_edit_propagation_on_a_face_video(client, photos, tmp_path):
    """A 10-frame MP4 of the astronaut moving 4 px a frame: every frame's face is followed, aligned, edited
    and pasted back: the frames change around her face and stay as they were away from it (codec noise)."""
    from fractions import Fraction

    from demos import examples, video

    photo = Image.open(photos["face"])
    frames = [photo.crop((8 * k, 0, 8 * k + 256, 256)) for k in range(10)]  # the face moves left 8 px a frame
    clip = video.write_mp4(frames, str(tmp_path / "face.mp4"), Fraction(10))
    face = faces.detect(frames[0])[0]
    _, _, out = client.predict(file(examples.path("edit_glasses.png")), file(photos["face"]), None, file(clip),
                               api_name="/propagate_edit")
    edited, _ = video.load_video_frames(out)
    originals, _ = video.load_video_frames(clip)
    assert len(edited) == 10 and edited[0].size == (256, 256)
    for k, (before, after) in enumerate(zip(originals, edited)):
        diff = np.abs(np.asarray(after, float) - np.asarray(before, float)).mean(-1)
        cx, cy = (np.array(face.eye_left) + face.eye_right) / 2 - (8 * k, 0)  # between her eyes in frame k
        near = np.zeros(diff.shape, bool)
        near[max(int(cy) - 70, 0):int(cy) + 90, max(int(cx) - 70, 0):int(cx) + 70] = True
        assert diff[near].mean() > 3 * diff[~near].mean() and diff[~near].mean() < 2.5, (k, diff[near].mean(),
                                                                                          diff[~near].mean())


def test_bundled_face_examples_align_from_the_renderers_points(client):
    """dlib does not see the drawn example faces: they are aligned from the eyes and mouth the renderer
    placed (demos.examples.known_face), so "Align the face" on the opening examples levels the face
    instead of warning that none was found; any other picture still goes through the detector."""
    from demos import examples, face_photos, models

    pipe = models._mark(SimpleNamespace(), kind="bundled", source="synthetic")
    for name in ("face_0.png", "exemplar_3.png"):
        photo = Image.open(examples.path(name)).convert("RGB")
        known = examples.known_face(photo)
        assert known is not None and examples.known_face(np.asarray(photo)) == known
        aligned = face_photos.align(pipe, photo, "photo", True)
        assert aligned is not None and aligned.image.size == (face_photos.CROP_SIDE,) * 2
        (lx, ly), (rx, ry) = aligned.face.eye_left, aligned.face.eye_right
        assert abs(ly - ry) < 1 and abs((lx + rx) / 2 - (face_photos.CROP_SIDE - 1) / 2) < 2  # level, centred
    assert examples.known_face(np.zeros((128, 128, 3), np.uint8)) is None
    content, style = file(examples.path("face_1.png")), file(examples.path("face_4.png"))
    _, _, files = client.predict(content, style, 3, api_name="/transfer_appearance")
    assert json.loads(Path(files[0]).read_text())["content_aligned"] is True
