"""coat.evaluate: the exact-answer triplets and the baselines behave as they must."""

import numpy as np
import pytest
import torch

from coat import tiny_random_pipeline
from coat.evaluate import (evaluate, lab_to_rgb, make_pairs, markdown_table, oracle_warp, part_colour_error, psnr, reinhard, rgb_to_lab,
                           run_model, warp_by_matches)


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
    coarse = [np.repeat(np.repeat(m.mask.view(6, *m.size).numpy(), 64 // m.size[0], 1), 64 // m.size[0], 2) for m in matches[1:]]
    untouched = unmatched & ~coarse[0] & ~coarse[1]
    assert np.array_equal(warped[untouched], pairs.content[untouched])  # no match: the content pixel (eq. 3)
    results = evaluate(pipe, pairs, [3, 9])
    assert set(results) >= {"COAT (n=3)", "COAT (n=9)", "copy content", "oracle warp (exact correspondence)"}
    assert results["oracle warp (exact correspondence)"]["all"]["psnr"] > results["copy style"]["all"]["psnr"]
    assert sum(r["count"] for k, r in results["copy style"].items() if k != "all") == 6
    assert "| copy style |" in markdown_table(results)
