"""Appearance transfer against exact answers on the synthetic categories (PROPOSAL: the paper
has only a user study).

Each unseen pair: content C = render(sA, tA), style S = render(sB, tB); the exact answer is
GT = render(sA, tB), same structure as C, texture of S. Metrics against GT: PSNR, LPIPS (the
project's LPIPS-Alex, a random trunk offline: then only comparable within this table) and the
part-colour error: for every object part of C's exact part map, the mean colour of the output
and of GT in CIELAB, their distance (Delta E 1976), averaged weighted by the part's area.

Methods: COAT (at one or more n), and baselines: copy content; copy style; Reinhard mean/std
transfer in Lab on the whole image, on the object only with the renderer's exact foreground
masks of C and S (the background left as it is), and, a stronger variant, object to object and
background to background with the same masks; the style image warped by the
model's own confident correspondences (eq. 2-3 applied to pixels: matched cells take the style
pixels, coarse to fine, the rest keep the content; no decoder); and an oracle warp with the
exact correspondence (the renderer's canonical coordinates; background by position).
Rows are also split by pose gap: terciles of the mean keypoint displacement between sA and sB.

    python -m coat.evaluate --checkpoint checkpoints/coat-faces --pairs 200 --json out.json
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import numpy as np
import torch

from .correspondence import ScaleMatches

# ------------------------------------------------------------------ data


@dataclass
class EvalPairs:
    content: np.ndarray  # uint8 (N, R, R, 3) render(sA, tA)
    style: np.ndarray  # uint8 (N, R, R, 3) render(sB, tB)
    target: np.ndarray  # uint8 (N, R, R, 3) render(sA, tB), the exact answer
    content_labels: np.ndarray  # int64 (N, R, R) part ids of C (and of GT)
    style_labels: np.ndarray  # int64 (N, R, R)
    content_coords: np.ndarray  # float32 (N, R, R, 2) canonical coordinates, NaN on background
    style_coords: np.ndarray
    pose_gap: np.ndarray  # float32 (N,) mean keypoint displacement sA -> sB, pixels


def make_pairs(category: str = "faces", n: int = 200, seed: int = 10_000, resolution: int = 64,
               pose: str = "aligned") -> EvalPairs:
    """`n` unseen triplets (seeds far from the training streams' (seed, block, stream) tuples)."""
    import synthetic

    s_a = synthetic.sample_structures(category, n, seed=(seed, 0), pose=pose)
    s_b = synthetic.sample_structures(category, n, seed=(seed, 1), pose=pose)
    t_a = synthetic.sample_textures(category, n, seed=(seed, 2))
    t_b = synthetic.sample_textures(category, n, seed=(seed, 3))
    c = synthetic.render(category, s_a, t_a, resolution)
    s = synthetic.render(category, s_b, t_b, resolution)
    gt = synthetic.render(category, s_a, t_b, resolution)
    gap = np.linalg.norm(c.keypoints - s.keypoints, axis=-1).mean(1).astype(np.float32)
    return EvalPairs(c.image, s.image, gt.image, c.labels, s.labels, c.coords, s.coords, gap)


# ------------------------------------------------------------------ metrics


_RGB_TO_XYZ = np.array([[0.4124564, 0.3575761, 0.1804375], [0.2126729, 0.7151522, 0.0721750],
                        [0.0193339, 0.1191920, 0.9503041]])


def rgb_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB uint8 or [0, 1] floats (..., 3) -> CIELAB (D65) float64 (..., 3)."""
    x = np.asarray(rgb, np.float64)
    if np.asarray(rgb).dtype == np.uint8:
        x = x / 255.0
    linear = np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)
    xyz = linear @ _RGB_TO_XYZ.T / np.array([0.95047, 1.0, 1.08883])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    return np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)


def lab_to_rgb(lab: np.ndarray) -> np.ndarray:
    """CIELAB (..., 3) -> sRGB floats in [0, 1] (clipped)."""
    fy = (lab[..., 0] + 16) / 116
    f = np.stack([fy + lab[..., 1] / 500, fy, fy - lab[..., 2] / 200], -1)
    xyz = np.where(f > 6 / 29, f**3, 3 * (6 / 29) ** 2 * (f - 4 / 29)) * np.array([0.95047, 1.0, 1.08883])
    linear = np.clip(xyz @ np.linalg.inv(_RGB_TO_XYZ).T, 0, 1)
    return np.where(linear <= 0.0031308, 12.92 * linear, 1.055 * linear ** (1 / 2.4) - 0.055)


def psnr(output: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image PSNR (dB) of uint8 (N, H, W, 3) images."""
    mse = ((output.astype(np.float64) - target.astype(np.float64)) ** 2).reshape(len(output), -1).mean(1)
    return 10 * np.log10(255.0**2 / np.maximum(mse, 1e-10))


def part_colour_error(output: np.ndarray, target: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per image: area-weighted Delta E (1976, CIELAB) between the mean colours of output and target
    over each object part (labels > 0) of the content's exact part map. (N,)."""
    lab_o, lab_t = rgb_to_lab(output), rgb_to_lab(target)
    out = np.zeros(len(output))
    for b in range(len(output)):
        total, area = 0.0, 0
        for part in np.unique(labels[b]):
            if part == 0:
                continue
            m = labels[b] == part
            total += m.sum() * np.linalg.norm(lab_o[b][m].mean(0) - lab_t[b][m].mean(0))
            area += m.sum()
        out[b] = total / max(area, 1)
    return out


def lpips_scores(output: np.ndarray, target: np.ndarray, perceptual, batch: int = 32) -> np.ndarray:
    def t(a):
        return torch.from_numpy(a).float().permute(0, 3, 1, 2) / 127.5 - 1

    out = []
    with torch.no_grad():
        for i in range(0, len(output), batch):
            out.append(perceptual(t(output[i:i + batch]), t(target[i:i + batch])).flatten(1).mean(1).numpy())
    return np.concatenate(out)


# ------------------------------------------------------------------ baselines


def reinhard(content: np.ndarray, style: np.ndarray, content_mask: np.ndarray | None = None,
             style_mask: np.ndarray | None = None, background: bool = False) -> np.ndarray:
    """Reinhard et al. (2001) mean/std transfer in CIELAB, per image (uint8 (N, H, W, 3) -> same).
    With masks (N, H, W) bool: only the content's object takes the style object's statistics (the
    background is left as it is), or with `background` also background to background."""
    lab_c, lab_s = rgb_to_lab(content), rgb_to_lab(style)
    out = lab_c.copy()
    for b in range(len(content)):
        regions = [(np.ones(content.shape[1:3], bool), np.ones(style.shape[1:3], bool))]
        if content_mask is not None:
            regions = [(content_mask[b], style_mask[b])] + ([(~content_mask[b], ~style_mask[b])] if background else [])
        for mc, ms in regions:
            if mc.sum() == 0 or ms.sum() < 2:
                continue
            c, s = lab_c[b][mc], lab_s[b][ms]
            out[b][mc] = (c - c.mean(0)) / (c.std(0) + 1e-6) * s.std(0) + s.mean(0)
    return (lab_to_rgb(out) * 255).round().astype(np.uint8)


def warp_by_matches(content: np.ndarray, style: np.ndarray, matches: list) -> np.ndarray:
    """Eq. (3) on pixels: start from the content image; for each scale, coarse to fine, every
    content cell i of a confident pair (i, j) takes the pixels of style cell j (no decoder).
    matches: per scale a ScaleMatches over the batch."""
    out = content.copy()
    n, r = content.shape[:2]
    for m in sorted(matches, key=lambda m: m.size[0]):
        h, w = m.size
        k = r // h
        for b in range(n):
            i, j = (t.cpu().numpy() for t in m.pairs(b))
            for ii, jj in zip(i, j):
                yi, xi, yj, xj = (ii // w) * k, (ii % w) * k, (jj // w) * k, (jj % w) * k
                out[b, yi:yi + k, xi:xi + k] = style[b, yj:yj + k, xj:xj + k]
    return out


def oracle_warp(pairs: EvalPairs, chunk: int = 1024) -> np.ndarray:
    """The style image warped by the exact correspondence: each content foreground pixel takes the
    style foreground pixel with the nearest canonical coordinate; each background pixel the style
    pixel at the same position when that is background, else the nearest style background pixel."""
    n, r = pairs.content.shape[:2]
    out = np.empty_like(pairs.content)
    ys, xs = np.mgrid[0:r, 0:r]
    pos = torch.from_numpy(np.stack([xs, ys], -1).reshape(-1, 2).astype(np.float32))
    for b in range(n):
        src = pairs.style[b].reshape(-1, 3)
        fg_c = (pairs.content_labels[b] > 0).reshape(-1)
        fg_s = (pairs.style_labels[b] > 0).reshape(-1)
        target_index = np.arange(r * r)
        for query_mask, key_mask, feats in ((fg_c, fg_s, pairs.content_coords[b].reshape(-1, 2)), (~fg_c, ~fg_s, None)):
            keys = np.nonzero(key_mask)[0]
            queries = np.nonzero(query_mask)[0]
            if len(keys) == 0 or len(queries) == 0:
                continue
            if feats is None:  # background: by position, only where the style pixel is not background
                queries = queries[~key_mask[queries]]
                q, k = pos[queries], pos[keys]
            else:
                q = torch.from_numpy(feats[queries])
                k = torch.from_numpy(pairs.style_coords[b].reshape(-1, 2)[keys])
            for s in range(0, len(queries), chunk):
                target_index[queries[s:s + chunk]] = keys[torch.cdist(q[s:s + chunk], k).argmin(1).numpy()]
        out[b] = src[target_index].reshape(r, r, 3)
    return out


# ------------------------------------------------------------------ the model


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).float().permute(0, 3, 1, 2) / 127.5 - 1


def to_uint8(images: torch.Tensor) -> np.ndarray:
    pixels = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return pixels.permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def run_model(pipe, pairs: EvalPairs, n: int, batch: int = 16) -> tuple[np.ndarray, list]:
    """COAT outputs (uint8) and the confident matches (per scale, ScaleMatches over all pairs)."""
    images, matches = [], []
    for s in range(0, len(pairs.content), batch):
        x = to_tensor(pairs.content[s:s + batch]).to(pipe.device, pipe.encoder.dtype)
        y = to_tensor(pairs.style[s:s + batch]).to(pipe.device, pipe.encoder.dtype)
        out = pipe.run(x, y, n)
        images.append(to_uint8(out.image))
        matches.append(out.matches)
    merged = [ScaleMatches(torch.cat([m[s].mask for m in matches]), torch.cat([m[s].index for m in matches]),
                           torch.cat([m[s].confidence for m in matches]), matches[0][s].size)
              for s in range(len(matches[0]))]
    return np.concatenate(images), merged


def method_outputs(pipe, pairs: EvalPairs, n_values: list) -> dict:
    """name -> uint8 outputs for the model (one row per n) and every baseline."""
    outputs, model_matches = {}, None
    for n in n_values:
        images, matches = run_model(pipe, pairs, n)
        outputs[f"COAT (n={n})"] = images
        model_matches = model_matches or matches
    outputs["copy content"] = pairs.content
    outputs["copy style"] = pairs.style
    outputs["Reinhard (whole image)"] = reinhard(pairs.content, pairs.style)
    masks = (pairs.content_labels > 0, pairs.style_labels > 0)
    outputs["Reinhard (object only, exact masks)"] = reinhard(pairs.content, pairs.style, *masks)
    outputs["Reinhard (object and background, exact masks)"] = reinhard(pairs.content, pairs.style, *masks,
                                                                        background=True)
    outputs["warp by COAT matches (no decoder)"] = warp_by_matches(pairs.content, pairs.style, model_matches)
    outputs["oracle warp (exact correspondence)"] = oracle_warp(pairs)
    return outputs


def evaluate(pipe, pairs: EvalPairs, n_values: list | None = None, perceptual=None) -> dict:
    """{method: {stratum: {psnr, lpips, part_colour_error, part_colour_to_content, count}}} over strata all /
    small / medium / large pose gap. part_colour_error is the part-colour distance to the answer (the style's
    colours on the content's parts), part_colour_to_content the same distance to the content image."""
    n_values = n_values or [pipe.default_content_layers]
    if perceptual is None:
        from .losses import perceptual_network

        perceptual = perceptual_network()
    edges = np.quantile(pairs.pose_gap, [1 / 3, 2 / 3])
    strata = {"all": np.ones(len(pairs.pose_gap), bool), "small gap": pairs.pose_gap <= edges[0],
              "medium gap": (pairs.pose_gap > edges[0]) & (pairs.pose_gap <= edges[1]),
              "large gap": pairs.pose_gap > edges[1]}
    results = {}
    for name, images in method_outputs(pipe, pairs, n_values).items():
        scores = {"psnr": psnr(images, pairs.target), "lpips": lpips_scores(images, pairs.target, perceptual),
                  "part_colour_error": part_colour_error(images, pairs.target, pairs.content_labels),
                  "part_colour_to_content": part_colour_error(images, pairs.content, pairs.content_labels)}
        results[name] = {s: {k: float(v[m].mean()) for k, v in scores.items()} | {"count": int(m.sum())}
                         for s, m in strata.items() if m.any()}
    return results


def markdown_table(results: dict, pose_gap_edges: tuple | None = None) -> str:
    strata = list(next(iter(results.values())))
    head = "| method | " + " | ".join(f"PSNR {s}" for s in strata) + " | LPIPS | part colour dE |"
    lines = [head, "|" + "---|" * (len(strata) + 3)]
    for name, r in results.items():
        cells = [f"{r[s]['psnr']:.2f}" for s in strata]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r['all']['lpips']:.3f} | "
                                                          f"{r['all']['part_colour_error']:.2f} |")
    return "\n".join(lines)


# ------------------------------------------------------------------ the n sweep

MAX_STEP_FRACTION = 0.5  # issue #25: no single step of n makes more than half of the whole change
MIN_LEAD_DB = 2.0  # at the default n, PSNR to the answer at least this far above the best non-oracle baseline


def sweep_range(pipe) -> list:
    """The n values of `--n-sweep`: the range the checkpoint was trained over (the decoder's
    `content_layers_range`, train/coat.py --n-range) or, when it does not record one, 0..num_layers."""
    trained = pipe.decoder.config.get("content_layers_range")
    lo, hi = (int(trained[0]), int(trained[1])) if trained else (0, pipe.num_layers)
    return list(range(lo, hi + 1))


def n_trade_off(results: dict, n_values: list, default_n: int) -> dict:
    """The n sweep's trade-off (issue #25) from `evaluate` results over the strata "all".

    Per n: PSNR to the answer, part-colour distance to the style (to the answer render(sA, tB): the
    style's colours on the content's parts) and to the content render(sA, tA). Over the range, the
    output should move from the style's colours (small n) to the content's (large n): distance to
    the style non-decreasing and to the content non-increasing step by step (`monotone`), with no
    single step more than MAX_STEP_FRACTION of that series' whole change (`max_step_fraction`, the
    larger of the two series). At the default n: PSNR lead over the best non-oracle baseline."""
    n_values = sorted(n_values)
    if len(n_values) < 2 or n_values != list(range(n_values[0], n_values[-1] + 1)):
        raise ValueError(f"the n sweep needs consecutive n values (at least two), got {n_values}")
    if default_n not in n_values:
        raise ValueError(f"the default n = {default_n} is not among the swept values {n_values}")
    keys = ("psnr", "part_colour_error", "part_colour_to_content")
    rows = [{"n": n, **{k: results[f"COAT (n={n})"]["all"][k] for k in keys}} for n in n_values]
    to_style = np.array([r["part_colour_error"] for r in rows])
    to_content = np.array([r["part_colour_to_content"] for r in rows])
    steps_style, steps_content = np.diff(to_style), -np.diff(to_content)  # > 0: towards the content
    whole_style, whole_content = to_style[-1] - to_style[0], to_content[0] - to_content[-1]
    fractions = [steps_style / whole_style if whole_style > 0 else np.full(len(steps_style), np.inf),
                 steps_content / whole_content if whole_content > 0 else np.full(len(steps_content), np.inf)]
    for r, fs, fc in zip(rows[1:], *fractions):
        r["step_fraction_style"], r["step_fraction_content"] = float(fs), float(fc)
    baselines = {k: v["all"]["psnr"] for k, v in results.items() if not k.startswith(("COAT", "oracle"))}
    best = max(baselines, key=baselines.get)
    default_psnr = results[f"COAT (n={default_n})"]["all"]["psnr"]
    summary = {
        "rows": rows, "default_n": default_n,
        "whole_change_style": float(whole_style), "whole_change_content": float(whole_content),
        "monotone": bool((steps_style >= 0).all() and (steps_content >= 0).all()),
        "ends": bool(to_style[0] < to_content[0] and to_content[-1] < to_style[-1]),
        "max_step_fraction": float(max(np.max(f) for f in fractions)),
        "best_baseline": best, "best_baseline_psnr": float(baselines[best]), "default_psnr": float(default_psnr),
        "lead_db": float(default_psnr - baselines[best]),
    }
    summary["bars"] = {"monotone": summary["monotone"] and summary["ends"],
                       "max_step_fraction": summary["max_step_fraction"] <= MAX_STEP_FRACTION,
                       "lead": summary["lead_db"] >= MIN_LEAD_DB}
    return summary


def trade_off_table(summary: dict) -> str:
    lines = ["| n | PSNR to answer | part colour dE to style | to content | step to style (fraction of the change) "
             "| step to content |", "|---|---|---|---|---|---|"]
    for r in summary["rows"]:
        steps = "- | -"
        if "step_fraction_style" in r:
            steps = f"{r['step_fraction_style']:+.2f} | {r['step_fraction_content']:+.2f}"
        mark = " (default)" if r["n"] == summary["default_n"] else ""
        lines.append(f"| {r['n']}{mark} | {r['psnr']:.2f} | {r['part_colour_error']:.2f} | "
                     f"{r['part_colour_to_content']:.2f} | {steps} |")
    b, s = summary["bars"], summary
    ok = lambda x: "met" if x else "NOT met"  # noqa: E731
    lines += ["",
              f"monotone from the style's part colours to the content's: {ok(b['monotone'])} (whole change "
              f"{s['whole_change_style']:.2f} dE to style, {s['whole_change_content']:.2f} dE to content)",
              f"largest single step: {s['max_step_fraction']:.2f} of the whole change (bar <= {MAX_STEP_FRACTION}): "
              f"{ok(b['max_step_fraction'])}",
              f"default n = {s['default_n']}: PSNR {s['default_psnr']:.2f} dB, best non-oracle baseline "
              f"{s['best_baseline']} {s['best_baseline_psnr']:.2f} dB, lead {s['lead_db']:+.2f} dB "
              f"(bar >= {MIN_LEAD_DB}): {ok(b['lead'])}"]
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, help="a COATPipeline save_pretrained folder (or Hub repo id)")
    p.add_argument("--category", default="faces", help="synthetic category")
    p.add_argument("--pose", default="aligned", help="pose range of the pairs: aligned, medium or wide")
    p.add_argument("--pairs", type=int, default=200, help="number of unseen triplets")
    p.add_argument("--seed", type=int, default=10_000, help="seed of the triplets")
    p.add_argument("--n", type=int, nargs="+", default=None, help="content layers to evaluate (default: the trained n)")
    p.add_argument("--n-sweep", action="store_true",
                   help="every n of the trained range (0..layers when none is recorded), and the trade-off bars")
    p.add_argument("--check", action="store_true", help="with --n-sweep: exit 1 when a trade-off bar is not met")
    p.add_argument("--json", default=None, help="write the results here")
    return p.parse_args(argv)


def main(argv=None) -> dict:
    from .pipeline import COATPipeline

    args = parse_args(argv)
    torch.manual_seed(0)
    pipe = COATPipeline.from_pretrained(args.checkpoint)
    n_values = sweep_range(pipe) if args.n_sweep else (args.n or [pipe.default_content_layers])
    for n in n_values:
        pipe.check_n(n)
    pairs = make_pairs(args.category, args.pairs, args.seed, pipe.resolution, args.pose)
    results = evaluate(pipe, pairs, n_values)
    print(f"{args.pairs} unseen {args.category} pairs ({args.pose} poses, seed {args.seed}), {pipe.resolution} px; "
          f"PSNR / LPIPS / part-colour error against render(sA, tB)")
    print(markdown_table(results))
    summary = None
    if args.n_sweep:
        summary = n_trade_off(results, n_values, pipe.default_content_layers)
        print(f"\nn sweep over {n_values[0]}..{n_values[-1]} (part-colour dE over the content's parts, to the answer "
              "render(sA, tB) = the style's colours, and to the content render(sA, tA)):")
        print(trade_off_table(summary))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "results": results, "n_sweep": summary}, f, indent=1)
    if args.check and summary is not None and not all(summary["bars"].values()):
        raise SystemExit(1)
    return results


if __name__ == "__main__":
    main()
