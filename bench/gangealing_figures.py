"""README figures for a GANgealing pipeline on synthetic faces (wide poses):

    python bench/gangealing_figures.py --checkpoint runs/gangealing-micro/pipeline --out docs

docs/gangealing_average.png: the average of --n images before and after congealing.
docs/gangealing_edit.png: an RGBA edit (rings around both eyes and a bar on the mouth) drawn
once in congealed space, at the mean congealed position of those keypoints, and propagated to
8 images (top row: inputs, bottom row: edited). It also prints how often the edit's centres land
within 0.1 / 0.2 x the face's keypoint box of the true eyes and mouth on the other images.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

import synthetic  # noqa: E402
from gangealing import GANgealingPipeline  # noqa: E402
from gangealing.evaluate import align_all, box_sizes  # noqa: E402
from gangealing.transformer import normalized_to_pixels  # noqa: E402


def report_edit_landing(pipe, batch, parts, centre, perm, start: int = 64) -> None:
    """How well "paint once, land on every face" holds: the edit's centres (mean congealed
    positions of `parts`, from the first `start` images) sent back into each of the other images,
    against the true keypoints there; hits within alpha * the face's keypoint box (the PCK rule)."""
    images = batch.image[start:]
    a = align_all(pipe, images)
    landed = pipe.congealed_points_to_input(a, centre[None].expand(len(images), -1, -1)).numpy()  # (n, P, 2)
    truth_ids = np.array([parts] * len(images))
    truth_ids[a.flipped.numpy()] = np.asarray(perm)[parts]  # a mirrored face's canonical left eye is its right eye
    kp, vis = batch.keypoints[start:] - 0.5, batch.visible[start:]
    truth = np.take_along_axis(kp, truth_ids[..., None], 1)
    seen = np.take_along_axis(vis, truth_ids, 1)
    box = box_sizes(kp, vis)
    dist = np.linalg.norm(landed - truth, axis=-1)
    for alpha in (0.1, 0.2):
        hits = (dist <= alpha * box[:, None]) & seen
        print(f"edit centres within {alpha} x face box of the true part, {len(images)} faces: "
              f"{100 * hits.sum() / seen.sum():.1f}% (eyes {100 * hits[:, :2].sum() / seen[:, :2].sum():.1f}%, "
              f"mouth {100 * hits[:, 2].sum() / seen[:, 2].sum():.1f}%)")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="GANgealingPipeline folder")
    p.add_argument("--out", default="docs", help="folder for the PNGs")
    p.add_argument("--n", type=int, default=256, help="images in the averages")
    p.add_argument("--scale", type=int, default=4, help="upscaling of the saved figures (nearest)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    pipe = GANgealingPipeline.from_pretrained(args.checkpoint)
    os.makedirs(args.out, exist_ok=True)
    s = pipe.input_size
    batch = synthetic.sample("faces", args.n, s, seed=4242, pose="wide")
    images = [Image.fromarray(im) for im in batch.image]
    before = Image.fromarray(batch.image.mean(0).round().astype(np.uint8))
    after = pipe.average_image(images)
    strip = np.concatenate([np.asarray(before), np.asarray(after.resize((s, s)))], 1)
    up = lambda a: Image.fromarray(a).resize((a.shape[1] * args.scale, a.shape[0] * args.scale), Image.NEAREST)  # noqa: E731
    up(strip).save(os.path.join(args.out, "gangealing_average.png"))

    # where the eyes and the mouth land in congealed space, on average
    names = synthetic.category("faces").keypoint_names
    parts = [names.index(k) for k in ("left_eye_outer", "right_eye_outer", "upper_lip")]
    a = align_all(pipe, batch.image[:64])
    kp = torch.as_tensor(batch.keypoints[:64] - 0.5, dtype=torch.float32)
    congealed = pipe.input_points_to_congealed(a, kp)  # (64, K, 2) normalised
    keep = torch.as_tensor(batch.visible[:64])
    perm = list(synthetic.category("faces").flip_permutation)
    congealed[a.flipped] = congealed[a.flipped][:, perm]  # a mirrored image's left eye is the canonical right eye
    keep[a.flipped] = keep[a.flipped][:, perm]
    centre = [(congealed[:, j][keep[:, j]].mean(0)) for j in parts]
    report_edit_landing(pipe, batch, parts, torch.stack(centre), perm)
    size = 4 * s
    edit = Image.new("RGBA", (size, size), (0, 0, 0, 0))
    draw = ImageDraw.Draw(edit)
    for j, c in enumerate(centre):
        x, y = (normalized_to_pixels(c, size)).tolist()
        r = size // 14
        if j < 2:
            draw.ellipse((x - r, y - r, x + r, y + r), outline=(255, 40, 40, 255), width=max(2, size // 40))
        else:
            draw.rectangle((x - 2 * r, y - r // 2, x + 2 * r, y + r // 2), fill=(40, 120, 255, 200))
    shown = images[:8]
    edited = pipe.propagate_edit(edit, shown)
    top = np.concatenate([np.asarray(im) for im in shown], 1)
    bottom = np.concatenate([np.asarray(im) for im in edited], 1)
    canvas = np.asarray(after.resize((s, s)).convert("RGBA")).copy()
    overlay = Image.alpha_composite(Image.fromarray(canvas), edit.resize((s, s)))
    left = np.concatenate([np.asarray(after.resize((s, s))), np.asarray(overlay.convert("RGB"))], 0)
    up(np.concatenate([left, np.concatenate([top, bottom], 0)], 1)).save(os.path.join(args.out, "gangealing_edit.png"))
    print("wrote", os.path.join(args.out, "gangealing_average.png"), os.path.join(args.out, "gangealing_edit.png"))


if __name__ == "__main__":
    main()
