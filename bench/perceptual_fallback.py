"""Does the perceptual distance see structure or texture? On synthetic faces, where both are known.

CoordGAN's texture-swap constraint (eq. 4) needs a distance that is small for two images with
the same structure and different textures, and large when the structure changes. This prints
the mean distance for both kinds of pairs, for the LPIPS in use (ImageNet trunk when its weights
are available, else the random-trunk fallback) and a few colour-blind alternatives.

    python bench/perceptual_fallback.py [--n 32] [--pose medium]
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import synthetic  # noqa: E402
from coordgan.losses import lpips_distance, perceptual_network  # noqa: E402
from train.data import image_to_tensor  # noqa: E402


def standardize(x):
    return ((x - x.mean((2, 3), keepdim=True)) / (x.std((2, 3), keepdim=True) + 1e-5)).clamp(-3, 3) / 3


def edge_magnitude(x):
    g = x.mean(1, keepdim=True)
    gx, gy = g[..., :-1, 1:] - g[..., :-1, :-1], g[..., 1:, :-1] - g[..., :-1, :-1]
    m = (gx**2 + gy**2 + 1e-6).sqrt()
    return m / (m.mean((2, 3), keepdim=True) + 1e-6)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=32, help="pairs of each kind")
    p.add_argument("--pose", default="medium", help="synthetic pose range")
    p.add_argument("--resolution", type=int, default=64)
    args = p.parse_args()
    lpips = perceptual_network("alex")
    s1, s2 = (synthetic.sample_structures("faces", args.n, k, args.pose) for k in (1, 2))
    t1, t2 = (synthetic.sample_textures("faces", args.n, k) for k in (3, 4))

    def image(s, t):
        return image_to_tensor(synthetic.render("faces", s, t, args.resolution).image)

    a, same_structure, same_texture = image(s1, t1), image(s1, t2), image(s2, t1)
    distances = {
        "LPIPS-alex (as loaded)": lambda x, y: lpips_distance(lpips, x, y),
        "LPIPS-alex on standardised grey": lambda x, y: lpips_distance(
            lpips, standardize(x).mean(1, keepdim=True).expand(-1, 3, -1, -1),
            standardize(y).mean(1, keepdim=True).expand(-1, 3, -1, -1)),
        "L1 of normalised edge magnitude, 4x pooled": lambda x, y: (F.avg_pool2d(edge_magnitude(x), 4)
                                                                    - F.avg_pool2d(edge_magnitude(y), 4)).abs().mean(),
    }
    print(f"faces, {args.pose} poses, {args.n} pairs each, {args.resolution}px")
    print("| distance | same structure, other texture | other structure, same texture | ratio (want << 1) |")
    print("|---|---|---|---|")
    with torch.no_grad():
        for name, d in distances.items():
            ss, st = d(a, same_structure).item(), d(a, same_texture).item()
            print(f"| {name} | {ss:.4f} | {st:.4f} | {ss / st:.2f} |")


if __name__ == "__main__":
    main()
