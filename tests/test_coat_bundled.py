"""The bundled checkpoints/coat-faces on fixed unseen synthetic pairs, against the exact answer
render(sA, tB): its PSNR beats every non-oracle baseline by a margin (coat/README.md has the full
table on 200 pairs, `python -m coat.evaluate --checkpoint checkpoints/coat-faces`)."""

from pathlib import Path

import pytest
import torch

from coat import COATPipeline
from coat.evaluate import make_pairs, method_outputs, part_colour_error, psnr

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


def test_bundled_coat_part_colours_beat_the_colour_transfer_and_copy_baselines(scores):
    """Not yet below its own match warp (no decoder), whose part colours are nearly exact: the
    issue's colour bar is open, see coat/README.md."""
    model = next(name for name in scores if name.startswith("COAT"))
    for name in ("copy content", "copy style", "Reinhard (whole image)", "Reinhard (object only, exact masks)",
                 "Reinhard (object and background, exact masks)"):
        assert scores[model][1] < scores[name][1], (name, scores[model], scores[name])
