"""Command line: `python -m synthetic export ...` and `python -m synthetic grid ...`."""

from __future__ import annotations

import argparse
import sys

import numpy as np
from PIL import Image

from .export import export, grid
from .renderer import POSES
from .templates import TEMPLATES


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m synthetic", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ex = sub.add_parser("export", help="write images/, labels/ and keypoints.json to a folder")
    ex.add_argument("--category", required=True, choices=sorted(TEMPLATES), help="which category")
    ex.add_argument("--n", type=int, default=1000, help="number of images")
    ex.add_argument("--resolution", type=int, default=128, help="image side in pixels")
    ex.add_argument("--out", required=True, help="output folder (created)")
    ex.add_argument("--seed", type=int, default=0, help="random seed (same seed, same files)")
    ex.add_argument("--pose", default="aligned", choices=sorted(POSES), help="pose range")
    gr = sub.add_parser("grid", help="PNG grid: rows share structure, columns share texture")
    gr.add_argument("--category", nargs="+", default=sorted(TEMPLATES), choices=sorted(TEMPLATES))
    gr.add_argument("--rows", type=int, default=3, help="structures per category")
    gr.add_argument("--cols", type=int, default=6, help="textures")
    gr.add_argument("--resolution", type=int, default=96, help="tile side in pixels")
    gr.add_argument("--seed", type=int, default=0, help="random seed")
    gr.add_argument("--pose", default="aligned", choices=sorted(POSES), help="pose range")
    gr.add_argument("--out", required=True, help="output PNG")
    args = parser.parse_args(argv)

    if args.command == "export":
        out = export(args.category, args.n, args.resolution, args.out, seed=args.seed, pose=args.pose)
        print(f"wrote {args.n} {args.category} images at {args.resolution}px to {out}")
    else:
        tiles = [grid(c, args.rows, args.cols, args.resolution, args.seed, args.pose) for c in args.category]
        Image.fromarray(np.concatenate(tiles, 0)).save(args.out)
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
