"""Every named endpoint through gradio_client against the app launched in-process (conftest's
app_server: tiny random pipelines loaded through the app's own flags), with valid and hostile input."""

import json
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import synthetic
from demos import examples, inputs, label_propagation, video


@pytest.fixture(scope="module")
def client(app_server):
    from gradio_client import Client

    return Client(app_server.url, verbose=False)


def file(path):
    from gradio_client import handle_file

    return handle_file(str(path))


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"))


def app_error(client, *args, api_name):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(*args, api_name=api_name)
    return str(info.value)


@pytest.fixture(scope="module")
def face(tmp_path_factory):
    """A synthetic face (reference) with its index label map, another face (query), as files."""
    folder = tmp_path_factory.mktemp("faces")
    batch = synthetic.sample("faces", 2, resolution=48, seed=21, pose="medium")
    paths = {}
    for i, name in enumerate(("reference", "query")):
        paths[name] = folder / f"{name}.png"
        Image.fromarray(batch.image[i]).save(paths[name])
    paths["labels"] = folder / "labels.png"
    Image.fromarray(batch.labels[0].astype(np.uint8), mode="L").save(paths["labels"])
    paths["folder"] = folder
    paths["labels_array"] = batch.labels[0]
    return paths


def test_api_lists_exactly_the_named_endpoints(client):
    api = client.view_api(print_info=False, return_format="dict")
    # exactly one public endpoint per action; the editor, generate-a-reference and click helpers are private
    assert set(api["named_endpoints"]) == {"/generate", "/grid", "/propagate_labels", "/congeal", "/propagate_edit",
                                           "/translate",
                                           "/transfer_appearance", "/synthetic", "/match_points", "/compare",
                                           "/align_face", "/input_from_photo", "/models"}
    assert not api["unnamed_endpoints"]


def test_generate_matches_the_pipeline_and_refuses_bad_seeds(client, app_server):
    pipe = app_server.pipelines["coordgan"]
    image, correspondence = client.predict(3, 7, api_name="/generate")
    expected = pipe.generate(structure_seed=3, texture_seed=7)
    assert np.array_equal(pixels(image), np.asarray(expected.images[0]))
    assert np.array_equal(pixels(correspondence), np.asarray(expected.correspondence_images[0]))
    mixed, _ = client.predict(3, 7, 4, 8, 0.5, 0.25, 0.7, api_name="/generate")
    expected = pipe.generate(structure_seed=3, texture_seed=7, structure_seed_2=4, texture_seed_2=8, structure_mix=0.5,
                             texture_mix=0.25, truncation=0.7)
    assert np.array_equal(pixels(mixed), np.asarray(expected.images[0]))
    assert ("The texture seed must be a whole number between 0 and 2147483647"
            in app_error(client, 1, -4, api_name="/generate"))
    # the slider's own bound
    assert "Value 3.0 is greater than maximum value 1" in app_error(client, 1, 2, 2, 3, 0, 0, 3.0, api_name="/generate")


def test_grid_rows_share_structure_columns_share_texture(client, app_server):
    grid = pixels(client.predict(0, 10, 2, 3, 1.0, api_name="/grid"))
    r = app_server.pipelines["coordgan"].generator.resolution
    assert grid.shape == (2 * r, 4 * r, 3)
    # the correspondence map column depends on the structure (row) only
    expected = app_server.pipelines["coordgan"].generate(structure_seed=[0, 1], texture_seed=[10, 10])
    for row in range(2):
        assert np.array_equal(grid[row * r : (row + 1) * r, 3 * r :], np.asarray(expected.correspondence_images[row]))
        assert np.array_equal(grid[row * r : (row + 1) * r, :r], np.asarray(expected.images[row]))


def test_propagate_labels_valid_and_converted_inputs(client, app_server, face, tmp_path):
    pipe = app_server.pipelines["coordgan"]
    overlay, label_map, gallery, files = client.predict(file(face["reference"]), file(face["labels"]),
                                                        file(face["query"]), api_name="/propagate_labels")
    reference, query = Image.open(face["reference"]), Image.open(face["query"])
    predicted = pipe.propagate_labels(reference, face["labels_array"], [query])[0]
    n = label_propagation.NUM_CLASSES
    assert np.array_equal(pixels(label_map), inputs.colorize(predicted, n))
    assert np.array_equal(pixels(overlay), inputs.overlay(query, predicted, n)) and len(gallery) == 1
    # the same map as palette colours; the query as CMYK, palette and RGBA files: converted to RGB first
    colour = tmp_path / "colour.png"
    Image.fromarray(inputs.colorize(face["labels_array"], n)).save(colour)
    cmyk = tmp_path / "query.tif"
    query.convert("CMYK").save(cmyk)
    rgba = tmp_path / "query_rgba.png"
    query.convert("RGBA").save(rgba)
    pal = tmp_path / "query_p.png"
    query.convert("P", palette=Image.Palette.ADAPTIVE, colors=64).save(pal)
    more = [file(cmyk), file(rgba), file(pal)]
    overlay2, label_map2, gallery2, files2 = client.predict(file(face["reference"]), file(colour), file(cmyk), more,
                                                            api_name="/propagate_labels")
    expected = pipe.propagate_labels(reference, face["labels_array"], [query.convert("CMYK").convert("RGB")])[0]
    assert np.array_equal(pixels(label_map2), inputs.colorize(expected, n))
    assert len(gallery2) == 4
    # take-away files: each query's labels as an index PNG at its own size, the first query's flow
    names = [Path(f).name for f in files2]
    assert names == ["labels_query_1.png", "labels_query_2.png", "labels_query_3.png", "labels_query_4.png",
                     "flow_query_1_to_reference.npy"]
    assert np.array_equal(np.asarray(Image.open(files2[0])), expected)
    assert np.load(files2[-1]).shape == (48, 48, 2)
    expected_p = pipe.propagate_labels(reference, face["labels_array"], [Image.open(pal).convert("RGB")])[0]
    assert np.array_equal(pixels(gallery2[3]["image"]), inputs.overlay(Image.open(pal).convert("RGB"), expected_p, n))
    # CoordGAN is training-free: a user's own classes (here ids up to 40, e.g. a 19-part face parser's) propagate
    own = np.where(face["labels_array"] > 0, face["labels_array"] + 29, 0).astype(np.uint8)
    own_file = tmp_path / "own_classes.png"
    Image.fromarray(own, mode="L").save(own_file)
    _, label_map3, _, _ = client.predict(file(face["reference"]), file(own_file), file(face["query"]),
                                         api_name="/propagate_labels")
    expected_own = pipe.propagate_labels(reference, own.astype(np.int64), [query])[0]
    assert expected_own.max() > 29 and np.array_equal(pixels(label_map3),
                                                      inputs.colorize(expected_own, int(own.max()) + 1))


def test_propagate_labels_hostile_inputs(client, face, tmp_path):
    ref, labels, query = file(face["reference"]), file(face["labels"]), file(face["query"])
    text = tmp_path / "labels.png"
    text.write_text("class ids, honest")
    assert ("'labels.png' is not an image file. Upload the reference label map as PNG"
            in app_error(client, ref, file(text), query, api_name="/propagate_labels"))
    huge = tmp_path / "huge.png"
    Image.new("L", (4097, 20)).save(huge)
    assert ("4097x20 pixels; the limit is 4096 pixels a side"
            in app_error(client, ref, labels, file(huge), api_name="/propagate_labels"))
    tiny = tmp_path / "tiny.png"
    Image.new("RGB", (8, 8)).save(tiny)
    assert ("8x8 pixels; it needs at least 16 pixels a side"
            in app_error(client, file(tiny), labels, query, api_name="/propagate_labels"))
    bad_colours = tmp_path / "bad_colours.png"
    rgb = inputs.colorize(face["labels_array"], label_propagation.NUM_CLASSES).copy()
    rgb[:3, :3] = [250, 1, 1]
    Image.fromarray(rgb).save(bad_colours)
    msg = app_error(client, ref, file(bad_colours), query, api_name="/propagate_labels")
    assert "9 pixels in colours that are not class colours of this model (e.g. #fa0101)" in msg
    unknown = tmp_path / "unknown.png"
    ids = face["labels_array"].astype(np.int32).copy()
    ids[0, 0] = 300
    Image.fromarray(ids, mode="I").save(unknown)
    assert ("contains class ids 300 but this model knows classes 0-255"
            in app_error(client, ref, file(unknown), query, api_name="/propagate_labels"))
    other_size = tmp_path / "other_size.png"
    Image.fromarray(face["labels_array"][:32].astype(np.uint8), mode="L").save(other_size)
    assert ("use a label map of the same size as the reference image"
            in app_error(client, ref, file(other_size), query, api_name="/propagate_labels"))
    background = tmp_path / "background.png"
    Image.new("L", (48, 48)).save(background)
    assert "all background" in app_error(client, ref, file(background), query, api_name="/propagate_labels")
    # the server is still alive and answering
    assert len(client.predict(ref, labels, query, api_name="/propagate_labels")) == 4


def test_sixteen_simultaneous_calls_all_finish(client, app_server):
    with ThreadPoolExecutor(16) as pool:
        jobs = list(pool.map(lambda s: client.submit(s, 100 + s, api_name="/generate"), range(16)))
        results = [job.result(timeout=120) for job in jobs]
    expected = app_server.pipelines["coordgan"].generate(structure_seed=list(range(16)),
                                                         texture_seed=[100 + s for s in range(16)])
    for (image, _), want in zip(results, expected.images):
        assert np.array_equal(pixels(image), np.asarray(want))


def test_examples_are_valid_inputs():
    # every example file passes the checks the endpoints apply
    n = label_propagation.NUM_CLASSES
    for i in range(6):
        assert inputs.load_rgb(examples.path(f"face_{i}.png")).size == (examples.RESOLUTION,) * 2
        assert np.array_equal(
            inputs.load_label_map(examples.path(f"face_{i}_labels.png"),
                                  n), inputs.load_label_map(examples.path(f"face_{i}_labels_color.png"), n)
        )
    frames, _ = video.load_video_frames(examples.path("video.gif"))
    assert len(frames) == 8


def loaded(app_server, name):
    from demos.models import MissingModel

    pipe = app_server.pipelines[name]
    if isinstance(pipe, MissingModel):
        pytest.skip(f"{name} has not landed: {pipe.message}")
    return pipe


def test_congeal_and_propagate_edit(client, app_server, face, tmp_path):
    pipe = loaded(app_server, "gangealing")
    congealed, (grid_file,) = client.predict(file(face["reference"]), api_name="/congeal")
    reference = Image.open(face["reference"]).convert("RGB")
    out = pipe.congeal([reference])
    assert np.array_equal(pixels(congealed), np.asarray(out.images[0]))
    grid = np.load(grid_file)  # for each congealed pixel, where it was sampled in the 48 x 48 reference
    assert grid.shape == (*pixels(congealed).shape[:2], 2) and Path(grid_file).name == "flow_congealed_to_image.npy"
    np.testing.assert_allclose(grid, ((out.grids[0].numpy() + 1) * 48 - 1) / 2,
                               atol=1e-4)  # square input: model frame = image
    size = pipe.congeal([reference]).images[0].size
    edit = np.zeros((size[1], size[0], 4), np.uint8)
    edit[: size[1] // 2, :, :] = [255, 0, 0, 255]
    edit_path = tmp_path / "edit.png"
    Image.fromarray(edit).save(edit_path)
    grey = tmp_path / "grey.png"
    reference.convert("L").save(grey)
    edited, gallery, video = client.predict(file(edit_path), file(face["reference"]), [file(grey)],
                                            file(examples.path("video.gif")), api_name="/propagate_edit")
    expected = pipe.propagate_edit(Image.fromarray(edit), [reference, reference.convert("L").convert("RGB")])
    assert np.array_equal(pixels(edited), np.asarray(expected[0]))
    assert np.array_equal(pixels(gallery[3]["image"]), np.asarray(expected[1])) and len(gallery) == 4
    assert not np.array_equal(pixels(edited), np.asarray(reference))  # the edit is visible
    gif = Image.open(video)
    assert gif.n_frames == 8 and gif.size == (examples.RESOLUTION, examples.RESOLUTION)
    clear = tmp_path / "clear.png"
    Image.new("RGBA", size).save(clear)
    assert ("The edit is fully transparent: paint something"
            in app_error(client, file(clear), file(face["reference"]), api_name="/propagate_edit"))
    frames = [Image.new("RGB", (32, 32), (i, 0, 0)) for i in range(3)]
    long = tmp_path / "long.gif"
    frames[0].save(long, save_all=True, append_images=frames[1:], duration=6000, loop=0)
    msg = app_error(client, file(edit_path), file(face["reference"]), None, file(long), api_name="/propagate_edit")
    assert "longer than 10 seconds; trim it" in msg
    text = tmp_path / "edit.txt"
    text.write_text("paint")
    assert ("'edit.txt' is not an image file. Upload the edit as PNG"
            in app_error(client, file(text), file(face["reference"]), api_name="/propagate_edit"))


def test_translate_and_correspondence(client, app_server, face, tmp_path):
    from demos import exemplar_translation

    pipe = loaded(app_server, "cocosnet")
    if pipe.input_kind != "mask":
        pytest.skip("the test pipeline is not a mask model")
    exemplar = Image.open(examples.path("exemplar_1.png")).convert("RGB")
    image, warped, (flow_file,) = client.predict(file(face["labels"]), file(examples.path("exemplar_1.png")),
                                                 api_name="/translate")
    expected = pipe.translate(face["labels_array"], exemplar, return_warped=True)
    assert np.array_equal(pixels(image), np.asarray(expected.image)) and pixels(image).shape == (48, 48, 3)
    assert np.array_equal(pixels(warped), np.asarray(expected.warped_exemplar))
    colour = tmp_path / "colour.png"
    Image.fromarray(inputs.colorize(face["labels_array"], pipe.num_classes)).save(colour)
    cmyk = tmp_path / "exemplar.jpg"
    exemplar.convert("CMYK").save(cmyk, quality=95)
    image2, _, _ = client.predict(file(colour), file(cmyk), api_name="/translate")
    expected2 = pipe.translate(face["labels_array"], Image.open(cmyk).convert("RGB"), return_warped=True)
    assert np.array_equal(pixels(image2), np.asarray(expected2.image))
    unknown = tmp_path / "unknown.png"
    ids = face["labels_array"].astype(np.uint8).copy()
    ids[10, 10] = pipe.num_classes
    Image.fromarray(ids, mode="L").save(unknown)
    assert f"contains class ids {pipe.num_classes} but this model knows classes 0-{pipe.num_classes - 1}" in app_error(
        client, file(unknown), file(cmyk), api_name="/translate"
    )
    huge = tmp_path / "huge.png"
    Image.new("RGB", (4100, 100)).save(huge)
    assert ("4100x100 pixels; the limit is 4096"
            in app_error(client, file(face["labels"]), file(huge), api_name="/translate"))
    from cocosnet import matching as cocosnet_matching

    flow = np.load(flow_file)  # for each input cell, its match in the exemplar
    f = pipe.correspondence_network.feature_resolution
    assert flow.shape == (f, f, 2) and Path(flow_file).name == "flow_input_to_exemplar.npy"
    np.testing.assert_array_equal(flow, cocosnet_matching.dense_flow(pipe, face["labels_array"], exemplar))
    # clicking the input: the red marker on the point, the blue one where the pipeline says it lands, the numbers
    view, text = exemplar_translation.correspondence(pipe, str(face["labels"]), examples.path("exemplar_1.png"), 20, 30)
    (px, py), = pipe.match_points(face["labels_array"], exemplar, [(20, 30)]).points
    assert f"(20, 30) in A -> ({px:.1f}, {py:.1f}) in B, confidence" in text
    left = round(48 * 256 / 48)
    right = round(exemplar.width * 256 / exemplar.height)
    assert view.shape == (256, left + 8 + right, 3)
    for half, colour, (cx, cy) in ((view[:, :left], (255, 0, 0), (20.5 * 256 / 48 - 0.5, 30.5 * 256 / 48 - 0.5)),
                                   (view[:, -right:], (0, 160, 255),
                                    ((px + 0.5) * 256 / exemplar.height - 0.5,
                                     (py + 0.5) * 256 / exemplar.height - 0.5))):
        ys, xs = np.nonzero((half == colour).all(-1))
        assert abs(xs.mean() - cx) < 2 and abs(ys.mean() - cy) < 2
    with pytest.raises(Exception, match=r"outside the 48x48 input"):
        exemplar_translation.correspondence(pipe, str(face["labels"]), examples.path("exemplar_1.png"), 60, 3)


def test_missing_checkpoints_leave_the_app_up_with_instructions(tmp_path):
    """No checkpoint anywhere: the app still builds and serves; every model endpoint says what to do."""
    import app
    from gradio_client import Client

    pipelines = app.models.load_all({name: str(tmp_path / name) for name in app.models.SPECS}, env={})
    demo = app.build_app(pipelines).queue()
    _, url, _ = demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", quiet=True)
    try:
        client = Client(url, verbose=False)
        msg = app_error(client, 1, 2, api_name="/generate")
        assert f"No coordgan checkpoint at `{tmp_path / 'coordgan'}`. Train one: `python train/coordgan.py" in msg
        assert "pass --coordgan DIR_OR_HUB_REPO or set COORDGAN_MODEL" in msg
        face = examples.path("face_0.png")
        from gradio_client import handle_file

        assert "--gangealing DIR_OR_HUB_REPO" in app_error(client, handle_file(face), api_name="/congeal")
        assert "--cocosnet DIR_OR_HUB_REPO" in app_error(client, handle_file(face), handle_file(face),
                                                         api_name="/translate")
    finally:
        demo.close()


def test_edge_model_translation_without_server(tmp_path):
    """An edge-input CoCosNet: the tab builds for it and translate() reads an edge image."""
    import gradio as gr

    cocosnet = pytest.importorskip("cocosnet")
    from demos import exemplar_translation

    pipe = cocosnet.tiny_random_pipeline(seed=1, input_kind="edge")
    with gr.Blocks():
        exemplar_translation.create_demo(pipe)  # edge examples, no label painter
    edges = examples.path("face_0_edges.png")
    image, warped, _ = exemplar_translation.translate(pipe, edges, examples.path("exemplar_0.png"))
    expected = pipe.translate(Image.open(edges).convert("L"),
                              Image.open(examples.path("exemplar_0.png")).convert("RGB"), return_warped=True)
    assert np.array_equal(np.asarray(image), np.asarray(expected.image)) and image.size == (examples.RESOLUTION,) * 2
    assert np.array_equal(np.asarray(warped), np.asarray(expected.warped_exemplar))


def test_transfer_appearance_matches_the_pipeline_and_refuses_bad_input(client, app_server, tmp_path):
    from demos.appearance_transfer import synthetic_pair

    pipe = loaded(app_server, "coat")
    content, style, _ = synthetic_pair()
    result, matches, (matches_file,
                      flow_file) = client.predict(file(content), file(style), 2, api_name="/transfer_appearance")
    expected = pipe.transfer(Image.open(content).convert("RGB"), Image.open(style).convert("RGB"), n=2)
    assert np.array_equal(pixels(result), np.asarray(expected.image))
    assert pixels(matches).shape[0] == 256 and pixels(matches).shape[1] > 512  # content | style, 256 px high
    data = json.loads(Path(matches_file).read_text())
    finest = expected.matches[0]
    assert np.allclose(data["scales_fine_to_coarse"][0]["content_points"], finest.content_points, atol=0.01)
    assert np.allclose(data["scales_fine_to_coarse"][0]["style_points"], finest.style_points, atol=0.01)
    assert np.load(flow_file).ndim == 3
    other = pixels(client.predict(file(content), file(style), 0, api_name="/transfer_appearance")[0])
    assert not np.array_equal(other, pixels(result))  # n changes which decoder layers see the content
    notes = tmp_path / "notes.png"
    notes.write_text("not an image")
    assert "is not an image file" in app_error(client, file(notes), file(style), 2, api_name="/transfer_appearance")
    assert f"must be a whole number from 0 to {pipe.num_layers}" in app_error(client, file(content), file(style), 2.5,
                                                                                 api_name="/transfer_appearance")
    big = tmp_path / "big.png"
    Image.new("L", (4100, 20)).save(big)
    assert "the limit is 4096 pixels a side" in app_error(client, file(content), file(big), 2,
                                                          api_name="/transfer_appearance")
