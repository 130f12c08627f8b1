"""The bundled checkpoints/coat-faces on fixed unseen synthetic pairs, against the exact answer
render(sA, tB): its PSNR beats every non-oracle baseline by a margin, and so does its part-colour
error, its own match warp included (coat/README.md has the full table on 200 pairs,
`python -m coat.evaluate --checkpoint checkpoints/coat-faces`)."""

from pathlib import Path

import pytest
import torch

from coat import COATPipeline
from coat.evaluate import make_pairs, method_outputs, part_colour_error, psnr

COLOUR_MARGIN = 0.15  # Delta E
CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "coat-faces"
pytestmark = pytest.mark.skipif(not (CHECKPOINT / "model_index.json").is_file(), reason="checkpoints/coat-faces is not bundled")


@pytest.fixture(scope="module")
def scores():
    torch.set_num_threads(1)
    pipe = COATPipeline.from_pretrained(CHECKPOINT)
    pairs = make_pairs("faces", 32, seed=777, resolution=pipe.resolution)  # not the README's seed 10000
    outputs = method_outputs(pipe, pairs, [pipe.default_content_layers])
    return {name: (psnr(images, pairs.target).mean(), part_colour_error(images, pairs.target, pairs.content_labels).mean())
            for name, images in outputs.items()}


def test_bundled_coat_beats_every_non_oracle_baseline_in_psnr(scores):
    model = next(name for name in scores if name.startswith("COAT"))
    baselines = {name: s for name, s in scores.items() if name != model and not name.startswith("oracle")}
    best = max(baselines, key=lambda name: baselines[name][0])
    assert scores[model][0] > baselines[best][0] + 2.0, (scores[model], best, baselines[best])


def test_bundled_coat_is_below_the_oracle(scores):
    model = next(name for name in scores if name.startswith("COAT"))
    assert scores[model][0] < scores["oracle warp (exact correspondence)"][0]


def test_bundled_coat_part_colours_beat_every_non_oracle_baseline(scores):
    """The issue's colour bar. Measured on these 32 pairs (step 7,320): COAT 2.02 Delta E, its own
    match warp (no decoder) 2.33, the next best 13.34; the margin is half the measured gap."""
    model = next(name for name in scores if name.startswith("COAT"))
    baselines = {name: s for name, s in scores.items() if name != model and not name.startswith("oracle")}
    assert "warp by COAT matches (no decoder)" in baselines
    best = min(baselines, key=lambda name: baselines[name][1])
    assert scores[model][1] < baselines[best][1] - COLOUR_MARGIN, (scores[model], best, baselines[best])
