"""train/coat.py for a few steps on the tiny config (batch 2): pairs, resume, export, frozen decoder."""

import json

import numpy as np
import torch

from train.coat import canonical_correspondence, grid_correspondence, main, parse_args, pseudo_pairs

COMMON = ["--config", "tiny", "--data", "synthetic:faces", "--batch-size", "2", "--save-every", "2",
          "--sample-every", "2",
          "--log-every", "1"]


def test_trains_resumes_exports_and_freezes_decoder(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    main(parse_args([*COMMON, "--output", str(tmp_path / "a"), "--steps", "2"]))
    main(parse_args([*COMMON, "--output", str(tmp_path / "a"), "--steps", "3", "--resume"]))
    assert "resumed" in capsys.readouterr().out
    logs = [json.loads(line) for line in (tmp_path / "a" / "logs.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logs] == [1, 2, 3] and all({"rec", "reg", "ccl", "match"} <= set(r) for r in logs)
    from coat import COATPipeline

    pipe = COATPipeline.from_pretrained(tmp_path / "a" / "pipeline")
    assert pipe.default_content_layers == 3
    # exact pairs, and a frozen decoder loaded from the first run's export
    main(parse_args([*COMMON, "--output", str(tmp_path / "b"), "--steps", "1", "--exact-pairs", "--decoder",
                     str(tmp_path / "a" / "pipeline")]))
    frozen = COATPipeline.from_pretrained(tmp_path / "b" / "pipeline").decoder
    for a, b in zip(frozen.state_dict().values(), pipe.decoder.state_dict().values()):
        assert torch.equal(a, b)


def test_pseudo_pairs_and_known_correspondence():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(4, 3, 32, 32) * 2 - 1
    content, style, target, grid = pseudo_pairs(images, g, self_fraction=0.0)
    assert content is images and style.shape == target.shape == images.shape
    assert target.min() >= -1 and target.max() <= 1 and not torch.allclose(target, images)
    index, valid = grid_correspondence(grid, 8)
    assert index.shape == valid.shape == (4, 64) and valid.float().mean() > 0.5
    _, style, target, grid = pseudo_pairs(images, g, self_fraction=1.0)  # self pairs: identity
    torch.testing.assert_close(style, images, atol=1e-5, rtol=0)
    torch.testing.assert_close(target, images)
    index, valid = grid_correspondence(grid, 8)
    assert valid.all() and torch.equal(index, torch.arange(64).expand(4, -1))
    # exact pairs: a structure against itself corresponds cell to cell
    import synthetic

    b = synthetic.sample("faces", 2, 32, seed=3)
    index, valid = canonical_correspondence(b.coords, b.coords, 8)
    fg = np.isfinite(b.coords[..., 0]).reshape(2, 8, 4, 8, 4).mean((2, 4)).reshape(2, 64)
    keep = torch.from_numpy((fg > 0.5) | (fg == 0))
    assert valid[keep].all() and torch.equal(index[keep], torch.arange(64).expand(2, -1)[keep])


def test_colour_terms_flag_and_losses(tmp_path, monkeypatch):
    """--colour-weight (not in the paper): the per-part Delta E term with exact pairs, the low-pass term
    otherwise; the part term equals the evaluation's part-colour error / 100 on one image."""
    import pytest

    import synthetic
    from coat.evaluate import part_colour_error
    from coat.losses import lowpass_colour_loss, part_colour_loss

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    a, b = synthetic.sample("faces", 1, 64, seed=1), synthetic.sample("faces", 1, 64, seed=2)
    t = lambda x: torch.from_numpy(x).float().permute(0, 3, 1, 2) / 127.5 - 1  # noqa: E731
    output = t(b.image).requires_grad_()
    loss = part_colour_loss(output, t(a.image), torch.from_numpy(a.labels))
    assert abs(100 * loss.item() - part_colour_error(b.image, a.image, a.labels)[0]) < 0.05
    loss.backward()
    assert torch.isfinite(output.grad).all() and output.grad.abs().sum() > 0
    assert part_colour_loss(t(a.image), t(a.image), torch.from_numpy(a.labels)) < 1e-4
    assert lowpass_colour_loss(t(a.image), t(a.image)) == 0 and lowpass_colour_loss(t(b.image), t(a.image)) > 0
    assert parse_args([*COMMON, "--output", "x"]).colour_weight == 0  # the paper's loss by default
    assert parse_args([*COMMON, "--output", "x", "--exact-pairs"]).colour_term == "parts"
    assert parse_args([*COMMON, "--output", "x"]).colour_term == "lowpass"
    with pytest.raises(SystemExit):
        parse_args([*COMMON, "--output", "x", "--colour-term", "parts"])  # no part map without exact pairs
    for name, extra in (("parts", ["--exact-pairs"]), ("lowpass", [])):
        main(parse_args([*COMMON, "--output", str(tmp_path / name), "--steps", "1", "--colour-weight", "1", *extra]))
        logs = [json.loads(line) for line in (tmp_path / name / "logs.jsonl").read_text().splitlines()]
        assert logs[-1]["colour"] > 0
    # a fine-tune from a saved state at a lower --lr: the given lr replaces the saved one
    main(parse_args([*COMMON, "--output", str(tmp_path / "parts"), "--steps", "2", "--exact-pairs", "--resume",
                     "--lr", "1e-4"]))
    saved = torch.load(tmp_path / "parts" / "state" / "step-0000002" / "optimizer.bin", weights_only=False)
    assert [g["lr"] for g in saved["param_groups"]] == [1e-4]


def test_n_range_draws_blends_and_records(tmp_path, monkeypatch):
    """--n-range (PROPOSAL): n per step in LO..HI (LO on --n-low-share of the steps), the target blended
    from the answer (LO) to the content (HI); --init starts from an export; D's config records the range."""
    import pytest

    from coat import COATPipeline, tiny_random_pipeline
    from train.coat import blended_target, draw_n

    draws = [draw_n(0, step, (3, 9), 0.25) for step in range(2000)]
    assert draws == [draw_n(0, step, (3, 9), 0.25) for step in range(2000)]  # a resume draws the same n
    counts = np.bincount(draws, minlength=10)
    assert counts[:3].sum() == 0 and (counts[4:] > 0).all()
    assert abs(counts[3] / 2000 - (0.25 + 0.75 / 7)) < 0.04 and abs(counts[9] / 2000 - 0.75 / 7) < 0.03
    target, content = torch.full((1, 3, 4, 4), 0.5), torch.full((1, 3, 4, 4), -0.5)
    assert torch.equal(blended_target(target, content, 3, (3, 9)), target)
    assert torch.equal(blended_target(target, content, 9, (3, 9)), content)
    torch.testing.assert_close(blended_target(target, content, 5, (3, 9)), torch.full((1, 3, 4, 4), 0.5 - 1 / 3))
    with pytest.raises(ValueError, match="outside"):
        blended_target(target, content, 2, (3, 9))
    for bad in (["--n-range", "5", "5"], ["--n-range", "3", "9", "--content-layers", "2"], ["--n-low-share", "2"]):
        with pytest.raises(SystemExit):
            parse_args([*COMMON, "--output", "x", *bad])

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    source = tiny_random_pipeline(seed=5)
    source.save_pretrained(tmp_path / "init")
    main(parse_args([*COMMON, "--output", str(tmp_path / "n"), "--steps", "2", "--exact-pairs", "--n-range", "3", "9",
                     "--init", str(tmp_path / "init"), "--lr", "1e-9"]))
    logs = [json.loads(line) for line in (tmp_path / "n" / "logs.jsonl").read_text().splitlines()]
    assert [r["n"] for r in logs] == [draw_n(0, step, (3, 9), 0.25) for step in (0, 1)]
    pipe = COATPipeline.from_pretrained(tmp_path / "n" / "pipeline")
    assert pipe.default_content_layers == 3 and list(pipe.decoder.config.content_layers_range) == [3, 9]
    for a, b in zip(pipe.encoder.state_dict().values(), source.encoder.state_dict().values()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)  # started from --init (lr ~ 0: still there)
    with pytest.raises(SystemExit):
        main(parse_args([*COMMON, "--output", str(tmp_path / "m"), "--steps", "1", "--n-range", "3", "10"]))
