"""The importer of the authors' released checkpoints, checked against their recorded outputs.

The fixtures (../shared/fixtures/gangealing-official, see its README) hold, for the authors'
own modules on deterministic weights, every key and shape of the released checkpoints and the
outputs of the inference calls their applications make. We rebuild those weights bit for bit
(weight bank + fill plans, SHA-256 checked), write them as an official-format .pt, convert it,
and run our pipeline's equivalent calls. Tolerances: verification.json.
"""

import argparse
import json
from pathlib import Path

import pytest
import torch
from official_fixtures import rebuild

from gangealing import GANgealingPipeline, StyleGAN2Generator
from gangealing.convert_official import main as convert_main
from gangealing.convert_official import from_official_checkpoint, read_checkpoint
from gangealing.transformer import total_variation

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "gangealing-official"
pytestmark = pytest.mark.skipif(not FIXTURES.is_dir(), reason=f"GANgealing official fixtures not found at {FIXTURES} "
                                                              "(they live outside the repository)")

# verification.json, "suggested_tolerances_for_an_independent_fp32_CPU_reimplementation"
TOL = dict(image=1e-4, generator_image=2e-4, grid=1e-5, matrix=1e-6, points=1e-3, latent=1e-5)


def load_fixture(name):
    from safetensors.torch import load_file

    return load_file(FIXTURES / name)


def assert_close(ours, ref, atol, what):
    diff = (ours.float() - ref.float()).abs().max().item()
    assert diff <= atol, f"{what}: max abs diff {diff:.3g} > {atol}"


@pytest.fixture(scope="module")
def bank():
    torch.set_num_threads(1)
    return load_fixture("weight_bank.safetensors")["bank"]


@pytest.fixture(scope="module")
def inputs():
    return load_fixture("stn_inputs.safetensors")


def fixture_json(name):
    return json.loads((FIXTURES / name).read_text())


def check_keys(model_state, keys_file, prefix=""):
    entries = fixture_json(keys_file)["entries"]
    for e in entries:
        assert tuple(model_state[prefix + e["key"]].shape) == tuple(e["shape"]), e["key"]
    assert len(entries) == len([k for k in model_state if k.startswith(prefix)])


@pytest.fixture(scope="module")
def pipe_k1(bank, tmp_path_factory):
    """Official-format file (g_ema 256 + t_ema K=1 + ll) -> CLI conversion -> from_pretrained."""
    stn, gen = fixture_json("fixture_stn_k1.json"), fixture_json("fixture_gen256.json")
    ckpt = {"g_ema": rebuild(gen["weight_fill_plan"], bank), "t_ema": rebuild(stn["weight_fill_plan"], bank),
            "ll": rebuild(gen["ll1_weight_fill_plan"], bank), "args": argparse.Namespace(inject=5, num_heads=1)}
    folder = tmp_path_factory.mktemp("official")
    torch.save(ckpt, folder / "cat.pt")  # "cat": border padding, 3 similarity iterations
    convert_main([str(folder / "cat.pt"), "--output", str(folder / "converted")])
    pipe = GANgealingPipeline.from_pretrained(folder / "converted")
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.fixture(scope="module")
def pipe_k4(bank, tmp_path_factory):
    stn, gen = fixture_json("fixture_stn_k4.json"), fixture_json("fixture_gen128.json")
    ckpt = {"g_ema": rebuild(gen["weight_fill_plan"], bank), "t_ema": rebuild(stn["weight_fill_plan"], bank),
            "classifier": rebuild(stn["classifier_weight_fill_plan"],
                                  bank), "ll": load_fixture("ll_K4_ndirs5_state.safetensors"),
            "args": argparse.Namespace(inject=6, num_heads=4)}
    path = tmp_path_factory.mktemp("official") / "model.pt"
    torch.save(ckpt, path)
    return from_official_checkpoint(path, category="car")


def test_k1_layout_and_settings(pipe_k1):
    check_keys(pipe_k1.transformer.state_dict(), "keys_t_ema_unimodal_K1.json")
    check_keys(pipe_k1.generator.state_dict(), "keys_g_ema_256.json")
    check_keys(pipe_k1.target.state_dict(), "keys_ll_K1_ndirs1.json")
    cfg = pipe_k1.transformer.config
    assert (cfg.padding_mode, cfg.similarity_iters, cfg.num_heads, cfg.flip, cfg.flow_size,
            cfg.input_size) == ("border", 3, 1, "tv", 128, 256)
    assert pipe_k1.classifier is None and pipe_k1.target.config.inject_index == 5


def test_k1_transformer_matches_recorded_calls(pipe_k1, inputs):
    out = load_fixture("stn_k1_outputs.safetensors")
    x = inputs["x"]
    with torch.inference_mode():
        a = pipe_k1.run(x, output_resolution=256)  # C1/C3: flips by total variation, then C2
        assert a.flipped.tolist() == out["C1_flip_indices"].view(-1).tolist()
        t = pipe_k1.transformer
        assert_close(total_variation(t(x).residual_flow), out["C1_tv_unflipped"], 1e-8, "C1 TV")
        assert_close(a.congealed, out["C2_image_256"], TOL["image"], "C2 image")
        assert_close(a.grid, out["C2_grid_256"], TOL["grid"], "C2 grid")
        assert_close(a.residual_flow, out["C2_residual_flow_128"], TOL["grid"], "C2 residual flow")
        assert_close(a.grid_into_original(), out["C3_grid_256_flip_corrected"], TOL["grid"], "C3 grid")
        assert_close(a.grid_flow_size, out["C4_grid_128"], TOL["grid"], "C4 grid")
        congealed_128 = t.stns[1].warp_head.warper(a.inputs, a.grid_flow_size, "border")
        assert_close(congealed_128, out["C1_congealed_128"], TOL["image"], "C1 congealed")
        steps = t.similarity_intermediates(a.inputs)
        for i, (_, matrix) in enumerate(steps):
            assert_close(matrix, out[f"C2b_sim_matrix_iter{i}"], TOL["matrix"], f"C2b matrix {i}")
        assert_close(steps[-1][0], out["C2b_sim_image_128"], TOL["image"], "C2b similarity image")
        assert_close(a.similarity, out["C2b_sim_matrix"], TOL["matrix"], "similarity matrix")
        points = pipe_k1.congealed_points_to_input(a, inputs["points_congealed_norm"])  # C5, unflipped
        assert_close(points, out["C5_points_px_original_frame"], TOL["points"], "C5 points")


def test_generator_and_target_256(pipe_k1):
    io = load_fixture("gen256_io.safetensors")
    g, ll = pipe_k1.generator, pipe_k1.target
    with torch.inference_mode():
        w = g.mapping(io["z"])
        assert_close(w, io["E1_w"], TOL["latent"], "E1 w")
        image, latents = g(io["z"], randomize_noise=False, return_latents=True)
        assert_close(image, io["E2_image_256"], TOL["generator_image"], "E2 image")
        assert_close(latents, io["E2_latents"], TOL["latent"], "E2 latents")
        for psi in ("0", "0.5", "1"):
            assert_close(ll(io["E1_w"], psi=float(psi)), io[f"E3_wplus_psi{psi}"], TOL["latent"], f"E3 psi {psi}")
        image = g(io["E3_wplus_psi0.5"], input_is_latent=True, randomize_noise=False)
        assert_close(image, io["E3_image_256_psi0.5"], TOL["generator_image"], "E3 image")


def test_k4_classifier_clusters_flips_and_points(pipe_k4, inputs):
    out = {}
    for name in ("stn_k4_outputs_image", "stn_k4_outputs_grid", "stn_k4_outputs_d0"):
        out.update(load_fixture(f"{name}.safetensors"))
    x, k = inputs["x"], 4
    check_keys(pipe_k4.transformer.state_dict(), "keys_t_ema_cluster_K4.json")
    check_keys(pipe_k4.classifier.state_dict(), "keys_classifier_K4.json")
    assert (pipe_k4.transformer.config.padding_mode, pipe_k4.transformer.config.similarity_iters) == ("reflection", 3)
    with torch.inference_mode():
        assert_close(pipe_k4.classifier(x), out["classifier_logits"], 1e-5, "classifier logits")
        a = pipe_k4.run(x, cluster="all", output_resolution=256)  # D1
        assert a.flipped.view(2, k).tolist() == out["D1_flip_NK"].tolist()
        assert_close(a.congealed.view(2, k, 3, 256, 256), out["D1_image_256"], TOL["image"], "D1 image")
        assert_close(a.grid.view(2, k, 256, 256, 2), out["D1_grid_256"], TOL["grid"], "D1 grid")
        assert_close(a.residual_flow.view(2, k, 128, 128, 2), out["D1_residual_flow_128"], TOL["grid"], "D1 flow")
        for c in (1, 3):  # D2: one cluster, flip from the classifier, points mapped back
            flips = pipe_k4.classifier.flips_per_cluster(x)[:, c]
            assert flips.tolist() == out[f"D2_cluster{c}_flip"].tolist()
            rows = [n * k + c for n in range(2)]
            a_c = type(a)(*[v[rows] for v in vars(a).values()])
            points = pipe_k4.congealed_points_to_input(a_c, inputs["points_congealed_norm"])
            assert_close(points, out[f"D2_cluster{c}_points_px_original_frame"], TOL["points"], f"D2 cluster {c}")
        assert pipe_k4.classifier.assign(x)[0].tolist() == [1, 1]  # run_flip: cluster 1, no flip
        d0 = pipe_k4.transformer(x.repeat_interleave(k, 0), heads=torch.arange(k).repeat(2), iters=1)
        assert_close(d0.congealed.view(2, k, 3, 128, 128), out["D0_image_128"], TOL["image"], "D0 image")
        assert_close(d0.grid.view(2, k, 128, 128, 2), out["D0_grid_128"], TOL["grid"], "D0 grid")
        assert_close(d0.residual_flow.view(2, k, 128, 128, 2), out["D0_residual_flow_128"], TOL["grid"], "D0 flow")


def test_generator_128_truncation(pipe_k4):
    io = load_fixture("gen128_io.safetensors")
    g = pipe_k4.generator
    check_keys(g.state_dict(), "keys_g_ema_128_celeba.json")
    assert (g.resolution, g.num_latents, pipe_k4.target.config.inject_index) == (128, 12, 6)
    assert_close(pipe_k4.target.state_dict()["directions"],
                 load_fixture("ll_K4_ndirs5_state.safetensors")["directions"], 0, "ll")
    with torch.inference_mode():
        w = g.mapping(io["z"])
        assert_close(w, io["F0_w"], TOL["latent"], "F0 w")
        assert_close(g(io["z"], randomize_noise=False), io["F1_image_128"], TOL["generator_image"], "F1 image")
        c = io["F_truncation_latent"]
        for inject, key in ((12, "F2_image_128_trunc0.7_inject12"), (4, "F3_image_128_trunc0.7_inject4")):
            image = g(w, input_is_latent=True, truncation=0.7, truncation_latent=c, inject_index=inject,
                      randomize_noise=False)
            assert_close(image, io[key], TOL["generator_image"], key)


def test_wrong_keys_are_named(tmp_path):
    g = StyleGAN2Generator(resolution=8, style_dim=8, n_mlp=1, channel_multiplier=1.0, max_channels=8)
    state = g.state_dict()
    state["conv1.noise.strength"] = state.pop("conv1.noise.weight")
    ckpt = {"g_ema": state, "t_ema": {}, "ll": {}, "args": argparse.Namespace(inject=5)}
    torch.save(ckpt, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match=r"'g_ema' does not match .*unknown keys: conv1.noise.strength; missing keys: "
                                         r"conv1.noise.weight"):
        from_official_checkpoint(tmp_path / "bad.pt")
    torch.save({"g_ema": {}, "weights": {}}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=r"unknown top-level keys: weights; missing top-level keys: t_ema, ll"):
        read_checkpoint(tmp_path / "other.pt")


def test_pickled_code_is_refused(tmp_path):
    torch.save({"g_ema": {}, "t_ema": {}, "ll": {}, "args": Path("/")}, tmp_path / "code.pt")  # a non-allowlisted class
    with pytest.raises(ValueError, match=r"holds pickled Python objects \(pathlib.PosixPath\) besides tensors; they "
                                         r"are not loaded"):
        read_checkpoint(tmp_path / "code.pt")
