"""coat.evaluate: the exact-answer triplets and the baselines behave as they must."""

import numpy as np
import pytest
import torch

from coat import tiny_random_pipeline
from coat.evaluate import (evaluate, lab_to_rgb, make_pairs, markdown_table, n_trade_off, oracle_warp,
                           part_colour_error, psnr, reinhard, rgb_to_lab, run_model, sweep_range, trade_off_table,
                           warp_by_matches)


@pytest.fixture(scope="module")
def pairs():
    return make_pairs("faces", 6, seed=123, resolution=64)


def test_pairs_share_structure_and_texture(pairs):
    assert pairs.content.shape == pairs.style.shape == pairs.target.shape == (6, 64, 64, 3)
    assert pairs.pose_gap.shape == (6,) and (pairs.pose_gap > 0).all()
    # the answer has the content's structure: the content's labels describe it exactly
    assert not np.array_equal(pairs.content, pairs.target)


def test_oracle_warp_is_near_perfect_and_copies_are_not(pairs):
    oracle = psnr(oracle_warp(pairs), pairs.target)
    copy_content = psnr(pairs.content, pairs.target)
    copy_style = psnr(pairs.style, pairs.target)
    assert np.isfinite(copy_content).all() and np.isfinite(copy_style).all()
    assert oracle.mean() > 22 and oracle.mean() > copy_style.mean() + 7 and copy_style.mean() > copy_content.mean()
    assert part_colour_error(oracle_warp(pairs), pairs.target, pairs.content_labels).mean() < 3
    assert part_colour_error(pairs.target, pairs.target, pairs.content_labels).max() == 0


def test_reinhard_moves_colour_statistics(pairs):
    out = reinhard(pairs.content, pairs.style)
    assert out.shape == pairs.content.shape and out.dtype == np.uint8
    assert not np.array_equal(out, pairs.content)
    lab_out, lab_style = rgb_to_lab(out), rgb_to_lab(pairs.style)
    assert np.abs(lab_out.mean((1, 2)) - lab_style.mean((1, 2))).max() < 4  # means match (up to gamut clipping)
    masked = reinhard(pairs.content, pairs.style, pairs.content_labels > 0, pairs.style_labels > 0)
    fg = pairs.content_labels[0] > 0
    assert np.array_equal(masked[:, ~fg][0], pairs.content[0][~fg])  # object only: the background stays
    both = reinhard(pairs.content, pairs.style, pairs.content_labels > 0, pairs.style_labels > 0, background=True)
    assert np.array_equal(both[0][fg], masked[0][fg]) and not np.array_equal(both[0][~fg], masked[0][~fg])
    assert np.abs(rgb_to_lab(masked)[0][fg].mean(0) - lab_style[0][pairs.style_labels[0] > 0].mean(0)).max() < 4
    rgb = np.random.default_rng(0).random((10, 3))
    np.testing.assert_allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-6)
    np.testing.assert_allclose(rgb_to_lab(np.array([1.0, 1.0, 1.0])), [100, 0, 0], atol=1e-3)


def test_model_rows_and_match_warp(pairs):
    torch.manual_seed(0)
    pipe = tiny_random_pipeline(seed=0)
    images, matches = run_model(pipe, pairs, 3, batch=4)
    assert images.shape == pairs.content.shape and len(matches) == 3 and matches[0].mask.shape == (6, 1024)
    warped = warp_by_matches(pairs.content, pairs.style, matches)
    unmatched = ~np.repeat(np.repeat(matches[0].mask.view(6, 32, 32).numpy(), 2, 1), 2, 2)
    coarse = [np.repeat(np.repeat(m.mask.view(6, *m.size).numpy(), 64 // m.size[0], 1), 64 // m.size[0],
                        2) for m in matches[1:]]
    untouched = unmatched & ~coarse[0] & ~coarse[1]
    assert np.array_equal(warped[untouched], pairs.content[untouched])  # no match: the content pixel (eq. 3)
    results = evaluate(pipe, pairs, [3, 9])
    assert set(results) >= {"COAT (n=3)", "COAT (n=9)", "copy content", "oracle warp (exact correspondence)"}
    assert results["oracle warp (exact correspondence)"]["all"]["psnr"] > results["copy style"]["all"]["psnr"]
    assert sum(r["count"] for k, r in results["copy style"].items() if k != "all") == 6
    assert "| copy style |" in markdown_table(results)


def _sweep_results(to_style, to_content, psnrs, baselines):
    """An `evaluate`-shaped dict from per-n numbers (n = 3, 4, ...) and baseline PSNRs."""
    rows = {f"COAT (n={3 + i})": {"all": {"psnr": p, "part_colour_error": s, "part_colour_to_content": c}}
            for i, (s, c, p) in enumerate(zip(to_style, to_content, psnrs))}
    return rows | {name: {"all": {"psnr": p}} for name, p in baselines.items()}


def test_n_trade_off_bars():
    baselines = {"copy content": 10.0, "warp by COAT matches (no decoder)": 18.6,
                 "oracle warp (exact correspondence)": 30.0}
    gradual = _sweep_results([2, 6, 10, 14, 18], [18, 14, 10, 6, 2], [23, 20, 17, 14, 11], baselines)
    s = n_trade_off(gradual, [3, 4, 5, 6, 7], default_n=3)
    assert s["bars"] == {"monotone": True, "max_step_fraction": True, "lead": True}
    assert s["max_step_fraction"] == pytest.approx(0.25) and s["whole_change_style"] == pytest.approx(16)
    assert s["best_baseline"] == "warp by COAT matches (no decoder)"  # not the oracle
    assert s["lead_db"] == pytest.approx(4.4)
    assert [r["step_fraction_content"] for r in s["rows"][1:]] == pytest.approx([0.25] * 4)
    assert "| 3 (default) | 23.00 | 2.00 | 18.00 | - | - |" in trade_off_table(s)
    # the old checkpoint's shape: flat, then a cliff at one step; and a step back towards the style
    n_values = [3, 4, 5, 6, 7]
    cliff = _sweep_results([2, 2, 15, 18, 18], [18, 18, 5, 2, 2], [23, 23, 13, 11, 11], baselines)
    cliff = n_trade_off(cliff, n_values, 3)
    assert cliff["bars"]["monotone"] and not cliff["bars"]["max_step_fraction"]
    assert cliff["max_step_fraction"] == pytest.approx(13 / 16)
    back = _sweep_results([2, 8, 7, 12, 18], [18, 12, 13, 8, 2], [20, 17, 17, 14, 11], baselines)
    back = n_trade_off(back, n_values, 3)
    assert not back["bars"]["monotone"] and back["bars"]["max_step_fraction"] and not back["bars"]["lead"]
    assert "NOT met" in trade_off_table(back)
    with pytest.raises(ValueError, match="consecutive"):
        n_trade_off(gradual, [3, 5, 7], 3)
    with pytest.raises(ValueError, match="default n"):
        n_trade_off(gradual, [4, 5, 6], 3)


def test_sweep_distances_and_range(pairs):
    pipe = tiny_random_pipeline(seed=0)
    assert sweep_range(pipe) == list(range(10))  # no trained range recorded: every n
    pipe.decoder.register_to_config(content_layers_range=[3, 9])
    assert sweep_range(pipe) == list(range(3, 10))
    results = evaluate(pipe, pairs, [3, 4])
    assert results["copy content"]["all"]["part_colour_to_content"] == 0
    assert results["copy style"]["all"]["part_colour_to_content"] > 5
    s = n_trade_off(results, [3, 4], 3)
    assert set(s["bars"]) == {"monotone", "max_step_fraction", "lead"} and len(s["rows"]) == 2
