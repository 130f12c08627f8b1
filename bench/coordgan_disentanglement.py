"""Has a CoordGAN generator disentangled structure from texture? A quick check of a checkpoint.

Prints, on `--n` random code pairs: how much the correspondence map varies across structure codes,
its range, and the colour-blind edge distance (coordgan.losses.edge_distance) between images that
share the structure code (other texture code) and images that share the texture code (other
structure code). A disentangled generator has a small first distance and a larger second one
(ratio << 1); a generator whose layout follows the texture code shows a ratio above 1.

    python bench/coordgan_disentanglement.py runs/coordgan-faces/generator [--n 32]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402

from coordgan import CoordGANGenerator  # noqa: E402
from coordgan.losses import edge_distance  # noqa: E402


@torch.no_grad()
def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("generator", help="a CoordGANGenerator save_pretrained folder (e.g. OUTPUT/generator of a run)")
    p.add_argument("--n", type=int, default=32, help="code pairs")
    args = p.parse_args()
    g = CoordGANGenerator.from_pretrained(args.generator).eval()
    rng = torch.Generator().manual_seed(0)
    s1, s2, t1, t2 = (torch.randn(args.n, g.config.z_dim, generator=rng) for _ in range(4))
    a = g(s1, t1, randomize_noise=False)
    same_structure = g(s1, t2, randomize_noise=False).image
    same_texture = g(s2, t1, randomize_noise=False).image
    cmap = a.correspondence_map
    d_s, d_t = edge_distance(a.image, same_structure).item(), edge_distance(a.image, same_texture).item()
    print("| measure | value |\n|---|---|")
    print(f"| correspondence map std across structure codes | {cmap.std(0).mean().item():.3f} |")
    print(f"| correspondence map range | [{cmap.amin().item():.2f}, {cmap.amax().item():.2f}] |")
    print(f"| edge distance, same structure code | {d_s:.4f} |")
    print(f"| edge distance, same texture code | {d_t:.4f} |")
    print(f"| ratio (want << 1) | {d_s / d_t:.2f} |")


if __name__ == "__main__":
    main()
