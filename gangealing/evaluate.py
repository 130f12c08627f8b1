"""PCK-transfer (section 4.2 of the paper): keypoints of image A go to congealed space (the
grid inverted by nearest neighbour) and on to image B through B's grid; a transferred keypoint
is correct when it lies within alpha * max(bbox height, bbox width) of B's annotation (the
SPair rule; the box is that of B's visible keypoints). Both directions of every pair count.

    python -m gangealing.evaluate --checkpoint checkpoints/gangealing-faces --data synthetic:faces --pose wide
    python -m gangealing.evaluate --checkpoint DIR --data folder:PATH   (PATH/images + PATH/keypoints.json)

Baselines on the same pairs: identity (keypoints copied unchanged) and the similarity-only
transformer (the same model with its residual flow switched off, same flip decisions).
Left/right keypoints are permuted when exactly one image of a pair is mirrored. The
"similarity oracle" row is a ceiling: the best similarity fitted on each pair's true keypoints.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import torch

ALPHAS = (0.1, 0.05, 0.01)


def load_keypoint_data(spec: str, n: int, resolution: int, seed: int, pose: str = "wide"):
    """images uint8 [n, R, R, 3], keypoints float32 [n, K, 2] (pixel-centre coordinates 0..R-1),
    visible bool [n, K], flip permutation (K,) or None."""
    kind, _, value = spec.partition(":")
    if kind == "synthetic":
        import synthetic

        batch = synthetic.sample(value, n, resolution, seed=seed, pose=pose)
        # the renderer's keypoints are continuous (pixel i spans [i, i+1)); ours put centres on integers
        return batch.image, batch.keypoints - 0.5, batch.visible, np.asarray(synthetic.category(value).flip_permutation)
    if kind == "folder":
        from synthetic.folder import ImageFolderDataset, tensor_to_image

        ds = ImageFolderDataset(value, resolution)
        items = [ds[i] for i in range(len(ds))]
        items = [it for it in items if "keypoints" in it][:n]
        if len(items) < 2:
            raise ValueError(f"{value} needs keypoints.json with keypoints for at least 2 images")
        images = np.stack([tensor_to_image(it["image"]) for it in items])
        keypoints = np.stack([it["keypoints"].numpy() for it in items]) - 0.5
        visible = np.stack([it["visible"].numpy() for it in items])
        perm = ds.meta.get("flip_permutation")
        return images, keypoints, visible, None if perm is None else np.asarray(perm)
    raise ValueError(f"--data must be 'synthetic:CATEGORY' or 'folder:PATH', got {spec!r}")


def random_pairs(n: int, num_pairs: int, seed: int) -> np.ndarray:
    """(num_pairs, 2) index pairs with distinct members."""
    rng = np.random.default_rng(seed)
    a = rng.integers(0, n, num_pairs)
    b = (a + rng.integers(1, n, num_pairs)) % n
    return np.stack([a, b], 1)


def box_sizes(keypoints: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(M, K, 2), (M, K) -> (M,): max side of each row's bounding box of its valid keypoints (0 if none)."""
    boxes = np.zeros(len(keypoints))
    for i, (t, v) in enumerate(zip(keypoints, valid)):
        if v.any():
            boxes[i] = (t[v].max(0) - t[v].min(0)).max()
    return boxes


def pck(predicted: np.ndarray, truth: np.ndarray, valid: np.ndarray, alphas=ALPHAS) -> dict:
    """predicted, truth (M, K, 2); valid (M, K). Threshold per row: alpha * max side of the
    bounding box of the valid truth keypoints. Returns {alpha: % correct over valid keypoints}."""
    out = {}
    dist = np.linalg.norm(predicted - truth, axis=-1)
    boxes = box_sizes(truth, valid)
    for alpha in alphas:
        correct = (dist <= alpha * boxes[:, None]) & valid
        out[alpha] = float(100 * correct.sum() / max(valid.sum(), 1))
    return out


@torch.no_grad()
def align_all(pipe, images: np.ndarray, batch_size: int = 32, flips=None, **kwargs):
    """The pipeline's Alignment of every image (at the model's input size), concatenated;
    `flips` (n,) imposes the mirror decisions."""
    from PIL import Image

    parts = []
    for i in range(0, len(images), batch_size):
        x, _ = pipe.preprocess([Image.fromarray(im) for im in images[i : i + batch_size]])
        parts.append(pipe.run(x, flips=None if flips is None else flips[i : i + batch_size], **kwargs))
    return type(parts[0])(*[torch.cat(v) for v in zip(*[vars(p).values() for p in parts])])


def transfer(pipe, alignment, keypoints: np.ndarray, pairs: np.ndarray,
             flip_permutation) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints of pairs[:, 0] moved onto pairs[:, 1] -> (M, K, 2) predictions, and whether the
    left/right permutation applied to each row."""
    a, b = alignment.select(torch.as_tensor(pairs[:, 0])), alignment.select(torch.as_tensor(pairs[:, 1]))
    points = torch.as_tensor(keypoints[pairs[:, 0]], dtype=alignment.grid.dtype)
    moved = pipe.congealed_points_to_input(b, pipe.input_points_to_congealed(a, points)).float().numpy()
    permuted = (a.flipped != b.flipped).numpy() & (flip_permutation is not None)
    if flip_permutation is not None:
        moved[permuted] = moved[permuted][:, flip_permutation]
    return moved, permuted


def pck_transfer(pipe, images, keypoints, visible, flip_permutation, pairs, alphas=ALPHAS) -> dict:
    """{method: {alpha: PCK %}} for gangealing, similarity-only and identity, both directions, and
    the similarity oracle (a ceiling for any global similarity, fitted on the truth)."""
    both = np.concatenate([pairs, pairs[:, ::-1]])
    truth, valid_b = keypoints[both[:, 1]], visible[both[:, 1]]
    full = align_all(pipe, images)
    # similarity only: the same mirror decisions as the full model, to isolate the flow's contribution
    similarity = align_all(pipe, images, flips=full.flipped,
                           similarity_only=True) if pipe.transformer.config.num_heads == 1 else None
    results = {}
    for name, alignment in (("gangealing", full), ("similarity only", similarity)):
        if alignment is None:
            continue
        predicted, permuted = transfer(pipe, alignment, keypoints, both, flip_permutation)
        valid_a = visible[both[:, 0]].copy()
        if flip_permutation is not None:
            valid_a[permuted] = valid_a[permuted][:, flip_permutation]
        results[name] = pck(predicted, truth, valid_a & valid_b, alphas)
    valid = visible[both[:, 0]] & valid_b
    results["identity"] = pck(keypoints[both[:, 0]], truth, valid, alphas)
    results["similarity oracle"] = pck(similarity_oracle(keypoints[both[:, 0]], truth, valid), truth, valid, alphas)
    return results


def similarity_oracle(source: np.ndarray, truth: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """A ceiling, not a method: per pair, the least-squares similarity (reflections allowed, for
    mirrored pairs) that maps source keypoints (M, K, 2) onto the truth ones, fitted on the truth
    itself; what any global similarity alignment could reach, given the category's shape variation."""
    out = np.array(source, dtype=np.float64)
    for i, (s, t, v) in enumerate(zip(source, truth, valid)):
        if v.sum() < 2:
            continue
        ms, mt = s[v].mean(0), t[v].mean(0)
        a, b = s[v] - ms, t[v] - mt
        u, sigma, vt = np.linalg.svd(a.T @ b)  # orthogonal Procrustes, reflection allowed
        rotation = u @ vt
        scale = sigma.sum() / max((a**2).sum(), 1e-12)
        out[i] = (s - ms) @ rotation * scale + mt
    return out


def format_table(results: dict, alphas=ALPHAS) -> str:
    lines = ["| method | " + " | ".join(f"PCK@{a}" for a in alphas) + " |", "|---|" + "---|" * len(alphas)]
    for name, row in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[a]:.1f}" for a in alphas) + " |")
    return "\n".join(lines)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="GANgealingPipeline folder or Hub repo id")
    p.add_argument("--data", default="synthetic:faces",
                   help="'synthetic:CATEGORY' or 'folder:PATH' with keypoints.json")
    p.add_argument("--pose", default="wide", help="pose range of synthetic data")
    p.add_argument("--n", type=int, default=200, help="images")
    p.add_argument("--pairs", type=int, default=500, help="random pairs (each evaluated in both directions)")
    p.add_argument("--seed", type=int, default=987_654, help="synthetic seed (training never uses a plain int seed)")
    p.add_argument("--json", default=None, help="also write the results here")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from .pipeline import GANgealingPipeline

    pipe = GANgealingPipeline.from_pretrained(args.checkpoint)
    pipe.set_progress_bar_config(disable=True)
    images, keypoints, visible, perm = load_keypoint_data(args.data, args.n, pipe.input_size, args.seed, args.pose)
    pairs = random_pairs(len(images), args.pairs, args.seed)
    results = pck_transfer(pipe, images, keypoints, visible, perm, pairs)
    print(f"PCK-transfer, {args.data} ({args.pose} poses), {len(images)} images, {len(pairs)} pairs x 2 directions, "
          f"{pipe.input_size}px")
    print(format_table(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"pck_transfer": {m: {str(a): v for a, v in r.items()} for m, r in results.items()},
                       "args": vars(args)}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
