"""The importer of the authors' CoordGAN checkpoints, checked against their recorded outputs.

The fixtures (../shared/fixtures/coordgan-official, see its README) hold every key and shape of
the checkpoints the authors' train.py / train-encoder.py write and the outputs of their inference
calls on deterministic weights. We rebuild those weights bit for bit (weight bank + fill plans,
SHA-256 checked), write official-format .pt files, convert them, and run our equivalent calls.
Tolerances: verification.json (suggested tolerances).

Speed (1 thread): a full 128 px image costs ~9 s per sample (11 convs of 512 channels), so images
are checked on 16x16 corner windows. The convolutions are local, so `synthesize` on a crop of the
correspondence map (and the same crop of the noise) that reaches 11 px (one per 3x3 conv) beyond a
window gives the exact window; one full 128 px image and the full 512 px image agreed as well
when measured (see coordgan/README.md).
"""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from official_fixtures import rebuild

from coordgan import CoordGANPipeline
from coordgan.convert_official import from_official_checkpoint, generator_key_map
from coordgan.convert_official import main as convert_main
from coordgan.correspondence import authors_transfer, propagate_labels
from coordgan.evaluate import miou

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "coordgan-official"
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"CoordGAN official fixtures not found at {FIXTURES} "
                                                              "(they live outside the repository)")
MEASURED = {}  # what -> max abs error, printed at the end of the module (pytest -s) for the README


def load_fixture(folder, name):
    from safetensors.torch import load_file

    return load_file(folder / name)


def fixture_json(folder, name):
    return json.loads((folder / name).read_text())


def assert_close(ours, ref, atol, what):
    diff = (ours.float() - ref.float()).abs().max().item()
    MEASURED[what] = max(diff, MEASURED.get(what, 0.0))
    assert diff <= atol, f"{what}: max abs diff {diff:.3g} > {atol}"


@pytest.fixture(scope="module", autouse=True)
def report():
    yield
    print("\n".join(f"  {k}: {v:.2g}" for k, v in MEASURED.items()))

# verification.json, "suggested_tolerances_for_an_independent_fp32_CPU_reimplementation"
TOL = dict(image=1e-4, warp=1e-5, code=1e-5, lff=5e-5, soft=1e-4)
MARGIN = 11  # receptive-field radius of the 11 styled 3x3 convs at 128 px
WINDOW = 16


@pytest.fixture(scope="module")
def bank():
    torch.set_num_threads(1)
    return load_fixture(FIXTURES, "weight_bank.safetensors")["bank"]


@pytest.fixture(scope="module")
def official_folder(bank, tmp_path_factory):
    """A train-encoder.py-layout file (g, e, g_ema, g_optim) -> CLI conversion -> a folder."""
    g_ema = rebuild(fixture_json(FIXTURES, "fixture_g128.json")["weight_fill_plan"], bank)
    e = rebuild(fixture_json(FIXTURES, "fixture_encoder.json")["weight_fill_plan"], bank)
    folder = tmp_path_factory.mktemp("coordgan-official")
    torch.save({"g": g_ema, "e": e, "g_ema": g_ema, "g_optim": {"state": {}, "param_groups": []}},
               folder / "celebA_enc.pt")
    assert convert_main([str(folder / "celebA_enc.pt"), "--output", str(folder / "converted")]) == 0
    (folder / "celebA_enc.pt").unlink()
    return folder / "converted"


@pytest.fixture(scope="module")
def pipe(official_folder):
    pipe = CoordGANPipeline.from_pretrained(official_folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe512(bank, tmp_path_factory):
    """train.py's celebA_512 layout, generator only, straight through from_official_checkpoint."""
    path = tmp_path_factory.mktemp("coordgan-official-512") / "celebA_512.pt"
    torch.save({"g_ema": rebuild(fixture_json(FIXTURES, "fixture_g512.json")["weight_fill_plan"], bank)}, path)
    pipe = from_official_checkpoint(path, code_means=False)
    path.unlink()
    return pipe


def noise_recipe(seed, batch, sizes=(128,) * 11):
    """The README's explicit-noise recipe: the draws the authors' forward makes after manual_seed."""
    torch.manual_seed(seed)
    return [torch.randn(batch, 1, s, s) for s in sizes]


def window(g, cmap, texture_code, noise, corner, size=WINDOW, resolution=None):
    """The `size` x `size` window of the image at `corner` ("tl" or "br"), from the smallest crop
    that holds its receptive field. -> (image window, crop offset)."""
    n = cmap.shape[-1]
    lo, hi = (0, size + MARGIN) if corner == "tl" else (n - size - MARGIN, n)

    def crop(t):
        a, b = lo * t.shape[-1] // n, hi * t.shape[-1] // n
        return t[..., a:b, a:b]

    image = g.synthesize(crop(cmap), texture_code, noise=[crop(z) for z in noise], resolution=resolution)
    return (image[..., :size, :size] if corner == "tl" else image[..., -size:, -size:]), lo


def image_window(reference, corner, size=WINDOW):
    return reference[..., :size, :size] if corner == "tl" else reference[..., -size:, -size:]


# ------------------------------------------------------------------ layout
def test_key_map_covers_the_authors_state_dicts(pipe, pipe512):
    for g, keys in ((pipe.generator, "keys_generator_128.json"), (pipe512.generator, "keys_generator_512.json")):
        entries = fixture_json(FIXTURES, keys)["entries"]
        key_map = generator_key_map(g)
        assert {k: v[0] for k, v in key_map.items()} == {e["key"]: tuple(e["shape"]) for e in entries}
    entries = fixture_json(FIXTURES, "keys_encoder.json")["entries"]
    assert [(k, tuple(v.shape)) for k,
            v in pipe.encoder.state_dict().items()] == [(e["key"], tuple(e["shape"])) for e in entries]
    assert (pipe.generator.resolution, pipe.generator.num_ws, pipe512.generator.resolution,
            pipe512.generator.num_ws) == (128, 12, 512, 16)
    assert pipe512.generator.num_styled_convs == 15 and pipe512.encoder is None


def test_fixed_128_grid_is_the_authors_linspace(pipe, pipe512):
    grid = fixture_json(FIXTURES, "fixture_g128.json")["facts"]["canonical_grid"]
    values = torch.tensor(grid["values_torch.linspace(-1,1,128)_float32"], dtype=torch.float32)
    for g in (pipe.generator, pipe512.generator):  # 128 x 128 at both sizes
        c = g.canonical_coords
        assert c.shape == (2, 128, 128)
        assert torch.equal(c[0, 5], values) and torch.equal(c[1, :, 5], values)  # x along the width, y along the height


# ------------------------------------------------------------------ 128 px generator
def test_codes_correspondence_map_and_fourier_features(pipe):
    io = load_fixture(FIXTURES, "g128_io.safetensors")
    g = pipe.generator
    trace = {r["module"]: r for r in fixture_json(FIXTURES, "fixture_g128.json")["activation_trace_G1"]}
    with torch.no_grad():
        assert_close(g.structure_code(io["z_struc"]), io["G1_struc_w"], TOL["code"], "G1 struc_w")
        assert_close(g.texture_code(io["z_style"]), io["G1_style_w"], TOL["code"], "G1 style_w")
        warp = g.correspondence_map(io["G1_struc_w"])  # G6: w_to_warp_coords from the codes
        assert_close(warp, io["G1_warp_coords"], TOL["warp"], "G1 warp")
        assert_close(warp, io["G2_vis"][:, :2], TOL["warp"], "G2 vis (the warp as an image, channel 2 all -1)")
        features = g.fourier(warp)
        assert_close(features[:, :4], io["G1_lff_out_c0to3"], TOL["lff"], "G1 LFF channels 0-3")
    for name, ours in (("lff", features), ("foldnet", warp)):
        for stat in ("mean", "std", "min", "max"):
            value = getattr(ours.double(), stat)().item()
            assert abs(value - trace[name][stat]) < TOL["lff"], f"{name} {stat}: {value} vs {trace[name][stat]}"


def test_images_mixing_swap_and_per_layer_trace(pipe):
    """G1 (= G2's image), G3 (W+ mixing), G4 (texture swap); the per-layer trace where its sample
    points fall in a window (G7, the partial sum after to_rgbs.3, is the to_rgbs.4 record of ours)."""
    io = load_fixture(FIXTURES, "g128_io.safetensors")
    g = pipe.generator
    ours_of = {"conv1": "convs.0", "conv1.conv": "convs.0.conv", "conv1.noise": "convs.0.noise", "to_rgb1": "to_rgbs.0",
               "to_rgb1.conv": "to_rgbs.0.conv"}
    ours_of.update({f"convs.{n}": f"convs.{n + 1}" for n in range(10)})
    ours_of.update({f"to_rgbs.{k}": f"to_rgbs.{k + 1}" for k in range(5)})
    trace = [r for r in fixture_json(FIXTURES, "fixture_g128.json")["activation_trace_G1"] if r["module"] in ours_of]
    seen, checked = {}, 0
    modules = dict(g.named_modules())
    hooks = [modules[ours_of[r["module"]]].register_forward_hook(
                 lambda m, i, o, name=r["module"]: seen.__setitem__(name, o)) for r in trace]
    with torch.no_grad():
        cmap = g.correspondence_map(io["G1_struc_w"])
        for corner in ("tl", "br"):
            image, lo = window(g, cmap, io["G1_style_w"], noise_recipe(1001, 4), corner)
            assert_close(image, image_window(io["G1_image"], corner), TOL["image"], f"G1 image ({corner} window)")
            for r in trace:
                out = seen[r["module"]]
                for flat, value in zip(r["sample_flat_index"], r["sample_values"]):
                    n, c, y, x = np.unravel_index(flat, r["shape"])
                    y, x = y - lo, x - lo
                    if (0 <= y < out.shape[-2] - (MARGIN if corner == "tl" else 0)
                            and 0 <= x < out.shape[-1] - (MARGIN if corner == "tl" else 0) and y >= 0):
                        # a window's layer outputs are exact away from the crop's inner edge (at most 11 px)
                        if corner == "br" and (y < MARGIN or x < MARGIN):
                            continue
                        diff = abs(out[n, c, y, x].item() - value)
                        MEASURED["per-layer trace"] = max(diff, MEASURED.get("per-layer trace", 0.0))
                        assert diff <= TOL["image"], f"trace {r['module']} at {flat}: {diff:.3g}"
                        checked += 1
        assert checked >= 2 * len(trace)
        mixed, _ = window(g, cmap, io["G3_wplus"], noise_recipe(1003, 4),
                          "tl")  # G3: W+ rows 0-5 and 6-11 from two samples
        assert_close(mixed, image_window(io["G3_image"], "tl"), TOL["image"], "G3 W+ mixing")
        swapped = g.texture_code(io["z_style"][[1, 0, 3, 2]])  # G4: utils.swap
        image, _ = window(g, cmap, swapped, noise_recipe(1004, 4), "br")
        assert_close(image, image_window(io["G4_image"], "br"), TOL["image"], "G4 texture swap")
    for h in hooks:
        h.remove()


def test_noise_is_drawn_afresh_on_every_call_as_upstream(pipe):
    """The authors' forward draws new noise from the global RNG on every call (no noise buffers):
    randomize_noise=True does the same, draw for draw; the pipeline's generate adds none."""
    g = pipe.generator
    io = load_fixture(FIXTURES, "g128_io.safetensors")
    cmap = g.correspondence_map(io["G1_struc_w"][:1])[..., : WINDOW + MARGIN, : WINDOW + MARGIN]
    with torch.no_grad():
        torch.manual_seed(7)
        a = g.synthesize(cmap, io["G1_style_w"][:1])
        b = g.synthesize(cmap, io["G1_style_w"][:1])
        assert not torch.equal(a, b)
        assert torch.equal(a,
                           g.synthesize(cmap, io["G1_style_w"][:1], noise=noise_recipe(7, 1, (WINDOW + MARGIN,) * 11)))


# ------------------------------------------------------------------ encoder
def test_encoder_codes_reconstruction_and_swap(pipe):
    io = load_fixture(FIXTURES, "enc_io.safetensors")
    g = pipe.generator
    with torch.no_grad():
        x, _ = pipe.preprocess(list(io["x_uint8_hwc"].numpy()))  # the authors' resize and scaling
        assert_close(x, io["x"], 1e-6, "encoder input")
        enc = pipe.encode(list(io["x_uint8_hwc"].numpy()))
        assert_close(enc.structure_codes, io["E1_struc_code"], TOL["code"], "E1 structure code")
        assert_close(enc.texture_codes, io["E1_texture_code"], TOL["code"], "E1 texture code")
        assert_close(enc.correspondence_maps, io["E2_warp_coords"], TOL["warp"], "E2 warp")
        noise = noise_recipe(2001, 2, (128,) * 22)  # E2 then E3 without reseeding
        image, _ = window(g, enc.correspondence_maps, enc.texture_codes, noise[:11], "tl")
        assert_close(image, image_window(io["E2_image"], "tl"), TOL["image"], "E2 reconstruction")
        image, _ = window(g, enc.correspondence_maps, enc.texture_codes[[1, 0]], noise[11:], "br")
        assert_close(image, image_window(io["E3_image"], "br"), TOL["image"], "E3 texture swap")


# ------------------------------------------------------------------ 512 px generator
def test_512_image_warp_and_default_128(pipe512):
    io = load_fixture(FIXTURES, "g512_io.safetensors")
    g = pipe512.generator
    with torch.no_grad():
        w_s, w_t = g.structure_code(io["z_struc"]), g.texture_code(io["z_style"])
        cmap = g.correspondence_map(w_s)
        assert_close(cmap, io["H1_warp_coords"], TOL["warp"], "H1 warp")
        # H1, cur_size=512: a 40 px crop of the 128 px map gives the top-left 96 x 96 of the 512 px image exactly
        noise = noise_recipe(3001, 1, (128,) * 11 + (256,) * 2 + (512,) * 2)
        image = g.synthesize(cmap[..., :40, :40], w_t,
                             noise=[z[..., : 40 * z.shape[-1] // 128, : 40 * z.shape[-1] // 128] for z in noise])
        assert_close(image[..., :96, :96], io["H1_image_512"][..., :96, :96], TOL["image"], "H1 512 px image")
        # H2: the authors' default cur_size=128 renders the 512 px model at 128 px
        image, _ = window(g, cmap, w_t, noise_recipe(3002, 1) + [torch.zeros(1, 1, 512, 512)] * 4, "tl", resolution=128)
        assert_close(image, image_window(io["H2_image_default_cur_size"], "tl"), TOL["image"], "H2 128 px default")
    assert g.resolutions == [128, 256, 512]


# ------------------------------------------------------------------ the authors' label transfer
def test_authors_label_transfer(pipe):
    """P1-P5 of eval_corr.get_seg_transfer_img: the query (chelsea) takes the reference's
    (astronaut) labels. Soft scores checked on every 4th target row (each target pixel is
    computed alone, so rows are exact subsets), labels on every pixel through the pipeline."""
    io, p = load_fixture(FIXTURES, "enc_io.safetensors"), load_fixture(FIXTURES, "prop_io.safetensors")
    facts = fixture_json(FIXTURES, "fixture_propagation.json")["facts"]
    w, seg, labels = io["E2_warp_coords"], p["inp_seg"], p["seg_label_maps"].long()
    values = torch.cat([seg, io["E2_image"]], 1)  # one-hot labels and colours share the affinity
    rows = slice(None, None, 4)
    out21 = authors_transfer(values[:1], w[:1], w[1:][..., rows, :])
    out12 = authors_transfer(values[1:], w[1:], w[:1][..., rows, :])
    assert_close(out21[:, :7], p["P2_soft_seg21"][..., rows, :], TOL["soft"], "P2 soft seg21")
    assert_close(out12[:, :7], p["P2_soft_seg12"][..., rows, :], TOL["soft"], "P2 soft seg12")
    assert_close(out21[:, 7:], p["P3_real21"][..., rows, :], TOL["soft"], "P3 colour 21")
    assert_close(out12[:, 7:], p["P3_real12"][..., rows, :], TOL["soft"], "P3 colour 12")
    assert torch.equal(out12[:, :7].argmax(1), p["P1_seg12"][..., rows, :])
    assert torch.equal(out21[:, :7].argmax(1), p["P1_seg21"][..., rows, :])
    assert abs(miou([p["P1_seg21"][0].numpy()], [labels[1].numpy()],
                    7) - 100 * facts["P1_mean_iou"]) < 1e-3  # our mIoU, their numbers
    # (P1 end to end, every pixel, through the pipeline and the app: test_app_endpoints_with_the_imported_model)
    # P4, hard mode: the nearest warped coordinate, which is also our eq. (1) rule
    for a, b, key in ((0, 1, "P4_hard_seg21"), (1, 0, "P4_hard_seg12")):
        assert torch.equal(propagate_labels(labels[a : a + 1], w[a : a + 1], w[b : b + 1], 7), p[key])
        hard = authors_transfer(seg[a : a + 1], w[a : a + 1], w[b : b + 1][..., ::8, :], hard=True).argmax(1)
        assert torch.equal(hard, p[key][..., ::8, :])
    # P5: the warps of sampled codes
    g1 = load_fixture(FIXTURES, "g128_io.safetensors")["G1_warp_coords"][:2]
    for a, b, key in ((0, 1, "P5_seg21"), (1, 0, "P5_seg12")):
        pred = propagate_labels(labels[a : a + 1], g1[a : a + 1], g1[b : b + 1][..., rows, :], 7, rule="authors")
        assert torch.equal(pred, p[key][..., rows, :])


# ------------------------------------------------------------------ the app with the imported model
def test_app_endpoints_with_the_imported_model(official_folder, tmp_path):
    """`python app.py --coordgan DIR` on the converted folder: every CoordGAN endpoint answers at
    128 px through gradio_client; label propagation with an uploaded label map and the authors'
    rule gives their P1 labels on every pixel (encoder, warp and transfer end to end)."""
    import socket

    from gradio_client import Client, handle_file
    from PIL import Image

    import app
    from demos import inputs, label_propagation

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    argv = [arg for name in app.models.SPECS
            for arg in (f"--{name}", str(official_folder if name == "coordgan" else tmp_path / "none"))]
    demo = app.main([*argv, "--host", "127.0.0.1", "--port", str(port), "--precision", "fp32"], block=False)  # parity
    try:
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        pixels = lambda path: np.asarray(Image.open(path).convert("RGB"))  # noqa: E731
        image, correspondence = client.predict(3, 7, api_name="/generate")
        assert pixels(image).shape == pixels(correspondence).shape == (128, 128, 3)
        grid = pixels(client.predict(3, 7, 1, 1, 1.0, 128, api_name="/grid"))  # one row, one column, then the map
        assert grid.shape == (128, 256, 3)
        assert np.array_equal(grid[:, :128], pixels(image)) and np.array_equal(grid[:, 128:], pixels(correspondence))
        io, p = load_fixture(FIXTURES, "enc_io.safetensors"), load_fixture(FIXTURES, "prop_io.safetensors")
        photos = []
        for i in range(2):
            photos.append(tmp_path / f"photo{i}.png")
            Image.fromarray(io["x_uint8_hwc"][i].numpy()).save(photos[-1])
        labels = tmp_path / "labels.png"
        Image.fromarray(p["seg_label_maps"][0].numpy()).save(labels)  # an index PNG, the user's own classes
        n = label_propagation.NUM_CLASSES
        _, label_map, gallery, _ = client.predict(handle_file(photos[0]), handle_file(labels), handle_file(photos[1]),
                                                  None, "authors",
                                               api_name="/propagate_labels")
        assert np.array_equal(pixels(label_map), inputs.colorize(p["P1_seg21"][0].numpy(), n)) and len(gallery) == 1
        _, label_map, _, _ = client.predict(handle_file(photos[0]), handle_file(labels), handle_file(photos[1]),
                                            api_name="/propagate_labels")
        assert pixels(label_map).shape == (128, 128, 3)  # our rule, the default
    finally:
        demo.close()
