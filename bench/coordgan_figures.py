"""README figures for a CoordGAN pipeline on synthetic faces:

    python bench/coordgan_figures.py --checkpoint checkpoints/coordgan-faces --out docs

docs/coordgan_swap_grid.png: the paper's Figure 1 layout. Rows share a structure code, columns a
texture code; the last column is each row's correspondence map (colour = canonical coordinate).
docs/coordgan_label_propagation.png: one reference face with its ground-truth parts (left), then
for unseen query faces: the query, the labels CoordGAN propagates through the encoded
correspondence maps (eq. 1), and the ground truth.
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

import synthetic  # noqa: E402
from coordgan import CoordGANPipeline  # noqa: E402
from demos.structure_texture import grid as swap_grid  # noqa: E402  (the app's Figure 1 grid)


def propagation_figure(pipe: CoordGANPipeline, queries: int, seed: int, pose: str) -> np.ndarray:
    r = pipe.generator.resolution
    batch = synthetic.sample("faces", queries + 1, r, seed=seed, pose=pose)
    images = [Image.fromarray(im) for im in batch.image]
    predicted = pipe.propagate_labels(images[0], batch.labels[0], images[1:])
    n = synthetic.category("faces").num_classes
    colour = lambda labels: synthetic.colorize(labels, n)  # noqa: E731
    reference = np.concatenate([batch.image[0], colour(batch.labels[0]), np.full_like(batch.image[0], 255)], 0)
    columns = [reference, np.full((3 * r, 4, 3), 255, np.uint8)]
    for q in range(queries):
        columns.append(np.concatenate([batch.image[q + 1], colour(predicted[q]), colour(batch.labels[q + 1])], 0))
    return np.concatenate(columns, 1)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="CoordGANPipeline folder")
    p.add_argument("--out", default="docs", help="folder for the PNGs")
    p.add_argument("--pose", default="aligned", help="pose range of the synthetic faces (as in training)")
    p.add_argument("--scale", type=int, default=2, help="upscaling of the saved figures (nearest)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    pipe = CoordGANPipeline.from_pretrained(args.checkpoint)
    os.makedirs(args.out, exist_ok=True)
    for name, array in (("coordgan_swap_grid.png", swap_grid(pipe, 0, 100, rows=4, cols=6)),
                        ("coordgan_label_propagation.png", propagation_figure(pipe, 6, 31337, args.pose))):
        image = Image.fromarray(array)
        image.resize((image.width * args.scale, image.height * args.scale),
                     Image.NEAREST).save(os.path.join(args.out, name))
        print("wrote", os.path.join(args.out, name))


if __name__ == "__main__":
    main()
