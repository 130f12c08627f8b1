"""The authors' released CoCosNet v1 checkpoints (issue 8), checked against the offline fixtures in
../shared/fixtures/cocosnet-official (README there): weights rebuilt bit for bit from the bank + fill
plans + spectral-norm u/v (every SHA-256 checked), written as latest_net_G.pth / latest_net_Corr.pth,
imported with `convert_official.from_official_checkpoint`, and the recorded inputs run through our
networks; every recorded output must agree within the README's tolerances (section 10).

Time: the official networks cost ~150 GFLOP per sample on one thread, so by default each config runs
one of the two recorded samples (alternating, so glasses in the input and in the exemplar are both
covered); COCOSNET_OFFICIAL_FULL=1 runs both samples of every config.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from cocosnet import CoCosNetPipeline
from cocosnet.convert_official import (convert, from_official_checkpoint, load_official_state_dict,
                                       main as convert_main, official_input_semantics)
from cocosnet.correspondence import dense_warp, softmax_summaries, soft_warp, correlation_features

FIXTURES = Path(__file__).resolve().parents[1].parent / "shared" / "fixtures" / "cocosnet-official"
CONFIGS = ("ade20k", "celebahq", "celebahqedge", "deepfashion")
DEFAULT_SAMPLE = {"ade20k": 0, "celebahq": 1, "celebahqedge": 0, "deepfashion": 1}
IMAGE_ATOL, IMAGE_MEAN_ATOL, LOGIT_ATOL, PROB_ATOL, ARGMAX_GAP = 1e-4, 1e-5, 1e-3, 1e-4, 1e-3
BANK_SHA256 = "786aac2bcb941d93e2236f254d491b2d4983a75cfa5b1129f6061456ff0d72f1"

needs_fixtures = pytest.mark.skipif(
    not (FIXTURES / "README.md").is_file(),
    reason=f"CoCosNet official fixtures not found at {FIXTURES}: put the cocosnet-official fixture folder there to "
           "run these checks",
)


def rebuild_state_dicts(config: str) -> dict:
    """{"G": state_dict, "Corr": state_dict} from bank_f32.npy + plan_<config>.json + snuv_<config>.npz,
    every tensor checked against its SHA-256 in the plan (README section 6)."""
    bank = np.load(FIXTURES / "bank_f32.npy")
    assert hashlib.sha256(bank.astype("<f4").tobytes()).hexdigest() == BANK_SHA256
    plan = json.loads((FIXTURES / f"plan_{config}.json").read_text())
    uv = np.load(FIXTURES / f"snuv_{config}.npz")
    n = len(bank)
    states = {}
    for net, entries in plan["networks"].items():
        state = {}
        for e in entries:
            if e["source"] == "bank":
                flat = np.take(bank, np.arange(e["offset"], e["offset"] + e["numel"]),
                               mode="wrap") * np.float32(2.0 ** e["scale_log2"])
                if e["shift"]:
                    flat = flat + np.float32(e["shift"])
                array = flat.astype(np.float32).reshape(e["shape"])
            else:
                array = uv[e["npz_array"]].astype(np.float32).reshape(e["shape"])
            assert hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest() == e["sha256"], f"{net} {e['key']}"
            state[e["key"]] = torch.from_numpy(np.array(array))
        assert n and len(state) == len(entries)
        states[net] = state
    return states


def recorded_inputs(config: str, samples: list) -> tuple:
    """(input_semantics, exemplar, exemplar_semantics) as the authors' loader + preprocessing emit them
    (README section 7)."""
    data = np.load(FIXTURES / f"inputs_{config}.npz")
    ref = torch.from_numpy(data["ref_rgb_u8"][samples]).permute(0, 3, 1, 2).float() / 255
    ref = (ref - 0.5) / 0.5
    if config == "ade20k":
        label, label_ref = (torch.from_numpy(data[k][samples])[:, None].float() for k in ("label_u8", "label_ref_u8"))
    elif config == "celebahq":
        label = torch.stack([torch.from_numpy(data["label_u8"][samples]),
                             torch.from_numpy(data["glasses_u8"][samples])], 1).float()
        label_ref = torch.stack([torch.from_numpy(data["label_ref_u8"][samples]),
                                 torch.from_numpy(data["glasses_ref_u8"][samples])], 1).float()
    else:
        label = torch.from_numpy(data["label_k_u8"][samples]).float() / 255
        label_ref = torch.from_numpy(data["label_ref_k_u8"][samples]).float() / 255
    return official_input_semantics(config, label), ref, official_input_semantics(config, label_ref)


@pytest.fixture(scope="module", params=CONFIGS)
def official_run(request, tmp_path_factory):
    """Rebuild, save as .pth, import, run the recorded inputs: one config at a time (~0.6 GB each)."""
    config = request.param
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the fixtures' reference used one thread
    states = rebuild_state_dicts(config)
    if config == "celebahq":  # the whole user path once: .pth files, torch.load(weights_only=True), import
        folder = tmp_path_factory.mktemp(config)
        torch.save(states["G"], folder / "latest_net_G.pth")
        torch.save(states["Corr"], folder / "latest_net_Corr.pth")
        pipe = from_official_checkpoint(folder / "latest_net_G.pth")  # release recognised, Corr beside it
    else:  # the same import from the state dicts, without 0.6 GB of file I/O
        corr, gen = convert(config, states["G"], states["Corr"])
        pipe = CoCosNetPipeline(correspondence_network=corr, generator=gen)
    del states
    samples = [0, 1] if os.environ.get("COCOSNET_OFFICIAL_FULL") == "1" else [DEFAULT_SAMPLE[config]]
    x, ref, ref_semantics = recorded_inputs(config, samples)
    recorded_corr = np.load(FIXTURES / f"corr_{config}.npz")
    with torch.inference_mode():
        image, corr = pipe.run(x, ref, ref_semantics)
        summaries = softmax_summaries(corr.query, corr.key, rows=recorded_corr["corr_rows_query_index"].tolist())
    outputs = {"fake_image": image, "warp_out": corr.warped_exemplar,
               "warp_out_prior_to_upsampling": corr.warped_exemplar_lowres,
               "warp_mask": corr.warp_mask, **{f"corr_{k}": v for k, v in summaries.items()}}
    recorded = {**dict(np.load(FIXTURES / f"outputs_{config}.npz")), **dict(recorded_corr)}
    yield config, samples, {k: v.float().numpy() if v is not None else None for k, v in outputs.items()}, recorded
    del pipe
    torch.set_num_threads(threads)


@needs_fixtures
@pytest.mark.parametrize("name", ["fake_image", "warp_out", "warp_out_prior_to_upsampling", "warp_mask"])
def test_images_match_recorded_outputs(official_run, name):
    config, samples, ours, recorded = official_run
    if name not in recorded:
        assert name != "warp_out" and (ours[name] is None or name == "warp_mask"), f"{config} recorded no {name}"
        if name == "warp_out_prior_to_upsampling":
            assert ours[name] is None  # deepfashion folds 4x4 patches straight to 256
        return
    expected = recorded[name][samples]
    assert ours[name] is not None and ours[name].shape == expected.shape, (config, name)
    diff = np.abs(ours[name] - expected)
    assert diff.max() <= IMAGE_ATOL and diff.mean() <= IMAGE_MEAN_ATOL, (config, name, diff.max(), diff.mean())


@needs_fixtures
def test_correspondence_softmax_matches_recorded_summaries(official_run):
    config, samples, ours, recorded = official_run
    for name, atol in [("corr_maxlogit", LOGIT_ATOL), ("corr_rows_logit", LOGIT_ATOL), ("corr_maxprob", PROB_ATOL),
                       ("corr_rows_prob", PROB_ATOL), ("corr_entropy", LOGIT_ATOL)]:
        diff = np.abs(ours[name] - recorded[name][samples]).max()
        assert diff <= atol, (config, name, diff)
    # argmax: exact wherever the top-1 / top-2 logit gap is clear (README section 10: near-ties may flip)
    flips = ours["corr_argmax"] != recorded["corr_argmax"][samples]
    clear = ours["corr_top2_gap"] > ARGMAX_GAP
    assert not (flips & clear).any(), (config, int((flips & clear).sum()))
    assert flips.sum() <= 25 * len(samples), (config, int(flips.sum()))


# ------------------------------------------------------------------ independent of the fixtures


def test_wrong_keys_are_named(tmp_path):
    fake = {"fc.weight": torch.zeros(1024, 22, 3, 3), "encoder.conv_in.weight": torch.zeros(3),
            "fc.bias": torch.zeros(7)}
    torch.save(fake, tmp_path / "latest_net_G.pth")
    torch.save({"theta.weight": torch.zeros(256, 275, 1, 1)}, tmp_path / "latest_net_Corr.pth")
    with pytest.raises(ValueError) as info:
        from_official_checkpoint(tmp_path, config="celebahq")
    message = str(info.value)  # the correspondence network is checked first, and names every problem
    assert ("'correspondence (latest_net_Corr.pth)' does not match the network this importer builds: "
            "missing keys: ") in message
    assert "adaptive_model_seg.layer1.0.weight_orig" in message and "(191 in all)" in message
    assert "unknown keys" not in message.splitlines()[0]  # theta.weight is a real key
    assert message.splitlines()[1].startswith("Check --config / config= (celebahq;")


def test_wrong_generator_keys_and_shapes_are_named(tmp_path):
    from cocosnet.convert_official import load_into
    from cocosnet.model import CoCosNetGenerator, network_configs

    with torch.device("meta"):
        generator = CoCosNetGenerator(**network_configs("celebahq")[1])
    state = {k: torch.empty(v.shape, device="meta") for k, v in generator.state_dict().items()}
    state["encoder.conv_in.weight"] = torch.empty(3, device="meta")
    state["fc.bias"] = torch.empty(7, device="meta")
    del state["conv_img.bias"]
    with pytest.raises(ValueError) as info:
        load_into(generator, state, "generator (latest_net_G.pth)")
    message = str(info.value)
    assert message == ("'generator (latest_net_G.pth)' does not match the network this importer builds: unknown keys: "
                       "encoder.conv_in.weight; missing keys: conv_img.bias; wrong shapes: fc.bias (7,) "
                       "(expected (1024,))")


def test_convert_cli_reports_bad_files(tmp_path, capsys):
    torch.save({"not.a.key": torch.zeros(1)}, tmp_path / "g.pth")
    torch.save({"not.a.key": torch.zeros(1)}, tmp_path / "c.pth")
    code = convert_main(["--config", "deepfashion", "--generator", str(tmp_path / "g.pth"), "--correspondence",
                         str(tmp_path / "c.pth"), "--output", str(tmp_path / "out")])
    assert code == 2 and "unknown keys: not.a.key" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match="does not exist"):
        load_official_state_dict(tmp_path / "missing.pth")


def test_unsafe_pickles_are_refused(tmp_path):
    torch.save({"weight": torch.zeros(1), "payload": object()}, tmp_path / "evil.pth")
    with pytest.raises(ValueError, match=r"holds pickled Python objects \(object\) besides tensors"):
        load_official_state_dict(tmp_path / "evil.pth")


@pytest.mark.parametrize("kernel", [1, 3])
def test_attention_warp_equals_dense_softmax(kernel):
    """Eq. (4) as chunked scaled_dot_product_attention == the literal (HW x HW) softmax formula."""
    g = torch.Generator().manual_seed(kernel)
    a, b = torch.randn(2, 6, 9, 9, generator=g), torch.randn(2, 6, 9, 9, generator=g)
    q, k = correlation_features(a, kernel), correlation_features(b, kernel)  # (2, 81, 6 k^2)
    values = torch.randn(2, 5, 9, 9, generator=g)
    cosine = q @ k.transpose(1, 2)
    # eq. (3) by hand at one pair: centred patch vectors, cosine
    pa = torch.nn.functional.unfold(a, kernel, padding=kernel // 2)[0, :, 40]
    pb = torch.nn.functional.unfold(b, kernel, padding=kernel // 2)[0, :, 7]
    pa, pb = pa - pa.mean(), pb - pb.mean()
    assert torch.allclose(cosine[0, 40, 7], pa @ pb / (pa.norm() * pb.norm()), atol=1e-6)
    dense = dense_warp(q, k, values, alpha=100.0)
    for chunk in (7, 81, 1000):
        assert torch.allclose(soft_warp(q, k, values, alpha=100.0, chunk_size=chunk), dense, atol=1e-5)
    manual = torch.einsum("bqk,bck->bcq", torch.softmax(100 * cosine, -1), values.flatten(2))
    assert torch.allclose(dense, manual, atol=1e-5)
