"""Train COAT (Jeon et al., BMVC 2022): encoder E, modulation encoder E_mod and decoder D.

    accelerate launch train/coat.py --config tiny --data synthetic:faces --output runs/coat-faces
    python train/coat.py ...                  (the same, one process)

One step: build (content I1, style I2, target) pairs, run eq. 1-4 (coat.coat_forward with n
content layers), and minimise eq. 7, L = L_rec + alpha L_reg + beta L_CCL, plus (PROPOSAL, weight
`match`) an InfoNCE on the matching features where the true correspondence is known.

Pairs (the paper does not say how it pairs images; PROPOSALS, see coat/README.md):
- default, self-supervised, works on any image folder: CoCosNet-style pseudo pairs. The target
  is the content image with a random colour transform (channel mixing, gain/offset and a smooth
  spatial colour field); the style is the target warped (random affine + smooth displacement).
  Content and target differ in texture, style and target in geometry; the warp is the known
  correspondence. A share of the pairs are self pairs (style = target = content).
- --exact-pairs (synthetic data only, not the paper's setting): (render(sA, tA), render(sB, tB))
  -> render(sA, tB), the known correspondence from the renderer's canonical coordinates.
L_CCL is computed on the transfer outputs of these pairs (re-encoded, eq. 6).

n per step (PROPOSAL, `--n-range LO HI`; the paper trains one n and picks n at test time, Fig. 4): each
step draws n in LO..HI (LO, the default n, on `--n-low-share` of the steps, otherwise uniformly), and the
target at n is the pair's target blended towards the content image by (n - LO) / (HI - LO)
(`blended_target`): at LO the full transfer, at HI the content itself, each step of n an equal share
in between. The decoder here has no pretrained StyleGAN2 whose coarse and fine layers would give the
trade-off by themselves, so without this target n past the trained one is a cliff (coat/README.md).
`--init PATH` starts the networks from a COATPipeline folder (a fine-tune of an export).

NOT IN THE PAPER, off by default (`--colour-weight 0`): `--colour-weight W` adds W L_colour to eq. 7,
a colour term next to L_rec. With --exact-pairs it is the per-part one (coat.losses.part_colour_loss:
Delta E 1976 between the mean Lab colours of output and answer over each part of the answer's exact
part map, / 100); otherwise, or with `--colour-term lowpass`, the MSE of the 8x8 average-pooled
output and target (coat.losses.lowpass_colour_loss).

The EMA of the three networks is exported with `save_pretrained` to OUTPUT/pipeline (a
COATPipeline folder: `python -m coat.evaluate --checkpoint OUTPUT/pipeline`). `--decoder PATH`
loads D from a COATPipeline or COATDecoder folder and freezes it (the paper's frozen pretrained
StyleGAN2); without it D is trained jointly.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # plain `python train/...`

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from coat import COATDecoder, COATPipeline, build_pipeline, coat_forward  # noqa: E402
from coat.losses import (correspondence_contrastive_loss, latent_regularizer, lowpass_colour_loss,
                         match_supervision_loss,  # noqa: E402
                         part_colour_loss, perceptual_network, reconstruction_loss)
from train.common import add_training_args, data_loader, ema_beta, fail, parse_training_args, resume, run, setup, update  # noqa: E402
from train.data import image_to_tensor, tensor_to_image  # noqa: E402

# Loss weights: MSE 1, LPIPS 0.8, alpha 2e-4 (pSp / e4e), beta 1, tau 0.07, 64 hard negatives
# (reference/coat.md PROPOSALs). `paper`: 256 px, batch 8, lr 1e-4 (e4e); `tiny`: 64 px on a CPU.
RECIPES = {
    "paper": dict(steps=500_000, batch_size=8, lr=1e-4, mse=1.0, lpips=0.8, alpha=2e-4, beta=1.0, match=1.0, tau=0.07,
                  num_negatives=64, self_fraction=0.25, ema_half_life_images=10_000),
    "tiny": dict(steps=8_000, batch_size=8, lr=2e-3, mse=1.0, lpips=0.8, alpha=2e-4, beta=1.0, match=1.0, tau=0.07,
                 num_negatives=64, self_fraction=0.25, ema_half_life_images=2_000),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(p, RECIPES, pose="aligned", save_every=250)
    p.add_argument("--lr", type=float, default=None,
                   help="Adam learning rate (default: the recipe's; with --resume it replaces the saved one)")
    p.add_argument("--content-layers", type=int, default=None,
                   help="n of eq. 4: decoder layers modulated by content features (default: the config's)")
    p.add_argument("--n-range", type=int, nargs=2, default=None, metavar=("LO", "HI"),
                   help="PROPOSAL: n per step in LO..HI, the target blended to the content by (n - LO) / (HI - LO)")
    p.add_argument("--n-low-share", type=float, default=0.25,
                   help="with --n-range: share of steps at n = LO (the rest uniform over LO..HI)")
    p.add_argument("--init", default=None, metavar="PATH", help="start E, E_mod and D from this COATPipeline folder")
    p.add_argument("--decoder", default=None, metavar="PATH",
                   help="load D from this COATPipeline/COATDecoder folder and freeze it")
    p.add_argument("--exact-pairs", action="store_true",
                   help="synthetic data only: train on render(sA,tA), render(sB,tB) -> render(sA,tB)")
    p.add_argument("--negatives", default="hard", choices=["hard", "random"],
                   help="CCL negatives: eq. 5 (hard) or random (CUT ablation)")
    p.add_argument("--ccl-scales", default="all", choices=["all", "single"],
                   help="CCL at every scale or only the coarsest (ablation)")
    p.add_argument("--beta", type=float, default=None, help="weight of L_CCL (0 = no CCL; default: the recipe's)")
    p.add_argument("--match-weight", type=float, default=None,
                   help="weight of the known-correspondence InfoNCE (PROPOSAL; 0 = off)")
    p.add_argument("--colour-weight", type=float, default=0.0,
                   help="NOT IN THE PAPER: weight of a colour term added to eq. 7 (default 0 = the paper's loss)")
    p.add_argument("--colour-term", default=None, choices=["parts", "lowpass"],
                   help="the colour term: 'parts' = Delta E of per-part mean Lab colours on the exact part map "
                        "(needs --exact-pairs; its default there), 'lowpass' = MSE of 8x8 average-pooled images "
                        "(default otherwise)")
    args = parse_training_args(p, argv)
    if args.exact_pairs and not args.data.startswith("synthetic:"):
        p.error("--exact-pairs needs --data synthetic:CATEGORY (it renders the exact answers)")
    if args.colour_term is None:
        args.colour_term = "parts" if args.exact_pairs else "lowpass"
    if args.colour_term == "parts" and not args.exact_pairs:
        p.error("--colour-term parts needs --exact-pairs (the exact part map of the answer)")
    if args.colour_weight < 0:
        p.error(f"--colour-weight must be at least 0, got {args.colour_weight}")
    if args.n_range is not None:
        lo, hi = args.n_range
        if not 0 <= lo < hi:
            p.error(f"--n-range needs 0 <= LO < HI, got {lo} {hi}")
        if args.content_layers is not None and not lo <= args.content_layers <= hi:
            p.error(f"--content-layers {args.content_layers} lies outside --n-range {lo} {hi}")
    if not 0 <= args.n_low_share <= 1:
        p.error(f"--n-low-share must be in [0, 1], got {args.n_low_share}")
    return args


# ---------------------------------------------------------------------------------------------- pairs


def smooth_field(batch: int, channels: int, grid: int, size: int, std: float,
                 generator: torch.Generator) -> torch.Tensor:
    """A random field (B, channels, size, size): N(0, std) on a grid x grid lattice, bicubic."""
    field = torch.randn(batch, channels, grid, grid, generator=generator) * std
    return F.interpolate(field, size=(size, size), mode="bicubic", align_corners=True)


def colour_transform(images: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """A random colour change per image (B, 3, R, R) in [-1, 1]: channel mixing, gain and offset,
    and a smooth spatial colour field (so colours change differently in different places)."""
    b, _, r, _ = images.shape
    x = (images + 1) / 2
    mix = torch.eye(3) + 0.35 * torch.randn(b, 3, 3, generator=generator)
    x = torch.einsum("bij,bjhw->bihw", mix, x)
    gain = 1 + 0.3 * torch.randn(b, 3, 1, 1, generator=generator)
    offset = 0.15 * torch.randn(b, 3, 1, 1, generator=generator)
    x = (x - 0.5) * gain + 0.5 + offset + smooth_field(b, 3, 3, r, 0.15, generator)
    return x.clamp(0, 1) * 2 - 1


def random_warp(batch: int, size: int, generator: torch.Generator, rotation: float = 0.25, log_scale: float = 0.12,
                shift: float = 0.12, elastic: float = 0.06) -> torch.Tensor:
    """A sampling grid (B, R, R, 2) in [-1, 1] (style pixel -> where it is in the target): random
    rotation / scale / shift plus a smooth displacement."""
    u = lambda *shape: 2 * torch.rand(*shape, generator=generator) - 1  # noqa: E731
    angle, scale = rotation * u(batch), torch.exp(log_scale * u(batch))
    theta = torch.zeros(batch, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle) * scale, -torch.sin(angle) * scale
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle) * scale, torch.cos(angle) * scale
    theta[:, :, 2] = shift * u(batch, 2)
    grid = F.affine_grid(theta, (batch, 3, size, size), align_corners=False)
    return grid + smooth_field(batch, 2, 4, size, elastic, generator).permute(0, 2, 3, 1)


def pseudo_pairs(images: torch.Tensor, generator: torch.Generator, self_fraction: float):
    """(content, style, target, grid): target = colour_transform(content), style = target warped by
    grid; a `self_fraction` of the pairs are self pairs (identity grid, no colour change)."""
    b, _, r, _ = images.shape
    target = colour_transform(images, generator)
    grid = random_warp(b, r, generator)
    keep = (torch.rand(b, generator=generator) < self_fraction)[:, None, None, None]
    identity = F.affine_grid(torch.eye(2, 3).expand(b, -1, -1), (b, 3, r, r), align_corners=False)
    grid = torch.where(keep, identity, grid)
    target = torch.where(keep, images, target)
    style = F.grid_sample(target, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return images, style, target, grid


def grid_correspondence(grid: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For each cell of a size x size style map, the content cell its centre comes from:
    (B, size^2) index and (B, size^2) valid (inside the image)."""
    g = F.interpolate(grid.permute(0, 3, 1, 2), size=(size, size), mode="bilinear", align_corners=False)  # (B, 2, s, s)
    x, y = ((g[:, 0] + 1) / 2 * size).floor().long(), ((g[:, 1] + 1) / 2 * size).floor().long()
    valid = (x >= 0) & (x < size) & (y >= 0) & (y < size)
    return (y.clamp(0, size - 1) * size + x.clamp(0, size - 1)).flatten(1), valid.flatten(1)


def canonical_correspondence(coords_a: np.ndarray, coords_b: np.ndarray,
                             size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact pairs: for each cell of a size x size content map, the style cell whose mean canonical
    coordinate is nearest (object cells), or the same cell (background in both: the background is
    drawn in image coordinates). coords (B, R, R, 2), NaN on background -> (B, size^2) index, valid."""
    def cells(coords):
        c = torch.from_numpy(coords).permute(0, 3, 1, 2)
        k = c.shape[-1] // size
        fg = (~torch.isnan(c[:, :1])).float()
        area = F.avg_pool2d(fg, k)
        mean = F.avg_pool2d(torch.nan_to_num(c) * fg, k) / area.clamp_min(1e-6)
        return mean.flatten(2).transpose(1, 2), area.flatten(1)  # (B, s^2, 2), (B, s^2)

    (pa, fa), (pb, fb) = cells(coords_a), cells(coords_b)
    distance = torch.cdist(pa, pb) + 1e3 * (fb < 0.5)[:, None, :]
    best, index = distance.min(2)
    background = (fa == 0) & (fb == 0)
    index = torch.where(background, torch.arange(size * size).expand_as(index), index)
    return index, ((fa > 0.5) & (best < 4.0 / size)) | background


class ExactPairs:
    """Endless exact triplets of a synthetic category, seeded by (seed, process, step)."""

    def __init__(self, category: str, resolution: int, batch: int, seed: int, pose: str):
        import synthetic

        self.synthetic, self.category, self.resolution = synthetic, category, resolution
        self.batch, self.seed, self.pose = batch, seed, pose

    def __call__(self, key: tuple):
        sy, cat, n = self.synthetic, self.category, self.batch
        s_a = sy.sample_structures(cat, n, seed=(self.seed, *key, 0), pose=self.pose)
        s_b = sy.sample_structures(cat, n, seed=(self.seed, *key, 1), pose=self.pose)
        t_a, t_b = sy.sample_textures(cat, n,
                                      seed=(self.seed, *key, 2)), sy.sample_textures(cat, n, seed=(self.seed, *key, 3))
        a, b = sy.render(cat, s_a, t_a, self.resolution), sy.render(cat, s_b, t_b, self.resolution)
        target = sy.render(cat, s_a, t_b, self.resolution).image
        return image_to_tensor(a.image), image_to_tensor(b.image), image_to_tensor(target), a.coords, b.coords, a.labels


# ---------------------------------------------------------------------------------------------- n per step


def draw_n(seed: int, step: int, n_range: tuple, low_share: float) -> int:
    """The step's n (the same in every process and micro-batch, and after a resume): LO with
    probability `low_share`, otherwise uniform over LO..HI."""
    lo, hi = n_range
    rng = np.random.default_rng((seed, step, 25))
    return lo if rng.random() < low_share else int(rng.integers(lo, hi + 1))


def blended_target(target: torch.Tensor, content: torch.Tensor, n: int, n_range: tuple) -> torch.Tensor:
    """PROPOSAL: the target at n, (1 - a) target + a content with a = (n - LO) / (HI - LO): the full
    transfer at LO, the content at HI, linear in between (target and content share the structure)."""
    lo, hi = n_range
    if not lo <= n <= hi:
        raise ValueError(f"n = {n} lies outside the trained range {lo}..{hi}")
    return torch.lerp(target, content, (n - lo) / (hi - lo))


# ---------------------------------------------------------------------------------------------- main


def sample_grid(pipe: COATPipeline, content: torch.Tensor, style: torch.Tensor, n: int) -> np.ndarray:
    """Rows: content, style, transfer."""
    out = pipe.run(content, style, n).image
    rows = [tensor_to_image(t) for t in (content, style, out)]
    return np.concatenate([np.concatenate(list(r), 1) for r in rows], 0)


def main(args) -> None:
    recipe = RECIPES[args.config]
    accelerator = setup(args, "coat")
    device = accelerator.device
    n_range = tuple(args.n_range) if args.n_range else None
    default_n = args.content_layers if args.content_layers is not None or not n_range else n_range[0]
    pipe = build_pipeline(args.config, content_layers=default_n)
    n = pipe.default_content_layers
    pipe.check_n(n)
    if n_range:
        if n_range[1] > pipe.num_layers:
            fail(f"--n-range {n_range[0]} {n_range[1]}: the {args.config} decoder has {pipe.num_layers} layers "
                 f"(n <= {pipe.num_layers})")
        pipe.decoder.register_to_config(content_layers_range=list(n_range))
    if args.init:
        try:
            source = COATPipeline.from_pretrained(args.init)
            for name in ("encoder", "modulation_encoder", "decoder"):
                getattr(pipe, name).load_state_dict(getattr(source, name).float().state_dict())
        except (OSError, ValueError, RuntimeError) as error:
            fail(f"--init {args.init}: not a COATPipeline of the {args.config} config ({str(error).splitlines()[0]})")
    encoder, modulation_encoder, decoder = pipe.encoder, pipe.modulation_encoder, pipe.decoder
    train_decoder = args.decoder is None
    if not train_decoder:
        folder = os.path.join(args.decoder,
                              "decoder") if os.path.isdir(os.path.join(args.decoder, "decoder")) else args.decoder
        try:
            decoder = COATDecoder.from_pretrained(folder)
        except (OSError, ValueError) as error:
            fail(f"--decoder {args.decoder}: not a COATPipeline or COATDecoder folder ({error})")
        if decoder.num_layers != pipe.decoder.num_layers:
            fail(f"--decoder has {decoder.num_layers} layers, the {args.config} config needs {pipe.decoder.num_layers}")
        decoder.register_to_config(content_layers=n, content_layers_range=list(n_range) if n_range else None)
        decoder.requires_grad_(False).eval()
    perceptual = perceptual_network().to(device)
    networks = [encoder, modulation_encoder] + ([decoder] if train_decoder else [])
    averages = [copy.deepcopy(m).eval().requires_grad_(False) for m in networks]
    params = [p for m in networks for p in m.parameters()]
    optimizer = torch.optim.Adam(params, lr=args.lr or recipe["lr"], betas=(0.9, 0.99))
    *networks, optimizer = accelerator.prepare(*networks, optimizer)
    if not train_decoder:
        decoder = decoder.to(device)
    encoder, modulation_encoder = networks[0], networks[1]
    if train_decoder:
        decoder = networks[2]
    state = resume(accelerator, args, *[a.to(device) for a in averages])
    if args.lr is not None:  # load_state restored the saved param_groups' lr: a fine-tune may lower it
        for group in optimizer.param_groups:
            group["lr"] = args.lr
    ema_pipe = COATPipeline(averages[0], averages[1], averages[2] if train_decoder else decoder)

    batch = args.batch_size or recipe["batch_size"]
    resolution = pipe.resolution
    beta = recipe["beta"] if args.beta is None else args.beta
    match_weight = recipe["match"] if args.match_weight is None else args.match_weight
    generator = torch.Generator().manual_seed(args.seed * 1000 + accelerator.process_index + 7 * state.step)
    exact = ExactPairs(args.data.partition(":")[2], resolution, batch, args.seed,
                       args.pose) if args.exact_pairs else None
    loader = None if exact else data_loader(args, accelerator, resolution, batch, state.step)
    e = lambda m: accelerator.unwrap_model(m)  # noqa: E731  (the methods DDP does not forward)
    sizes = e(encoder).feature_sizes

    def loss_fn(micro, step):
        if exact:
            content, style, target, coords_a, coords_b, labels = exact((accelerator.process_index, step, micro))
            known = [canonical_correspondence(coords_a, coords_b, s) for s in sizes]  # content cell -> style cell
        else:
            content, style, target, grid = pseudo_pairs(next(loader)["image"], generator, recipe["self_fraction"])
            known = [grid_correspondence(grid, s) for s in sizes]  # style cell -> content cell
        content, style, target = content.to(device), style.to(device), target.to(device)
        step_n = draw_n(args.seed, step, n_range, args.n_low_share) if n_range else n
        if n_range:
            target = blended_target(target, content, step_n, n_range)
            logs["n"] = torch.tensor(float(step_n))
        out = coat_forward(encoder, modulation_encoder, decoder, content, style, step_n)
        losses = {"rec": reconstruction_loss(out.image, target, perceptual, recipe["mse"], recipe["lpips"]),
                  "reg": latent_regularizer(out.styles)}
        if beta:
            keys = encoder(out.image, with_matching=True)[1]  # F^{2->1} = E(I_{2->1})
            scales = slice(None) if args.ccl_scales == "all" else slice(-1, None)
            losses["ccl"] = correspondence_contrastive_loss(keys[scales], out.content_keys[scales],
                                                            out.style_keys[scales],
                                                            out.matches[scales], recipe["num_negatives"], recipe["tau"],
                                                            args.negatives, generator=generator)
        if match_weight:
            index, valid = [k[0].to(device) for k in known], [k[1].to(device) for k in known]
            a, b = (out.content_keys, out.style_keys) if exact else (out.style_keys, out.content_keys)
            losses["match"] = match_supervision_loss(a, b, index, valid, recipe["tau"])
        if args.colour_weight:  # NOT IN THE PAPER (coat/README.md): part colours / low frequencies of the answer
            if args.colour_term == "parts":  # the answer render(sA, tB) has the content's part map
                losses["colour"] = part_colour_loss(out.image, target, torch.from_numpy(labels).to(device))
            else:
                losses["colour"] = lowpass_colour_loss(out.image, target)
        losses["matched"] = torch.stack([m.mask.float().mean() for m in out.matches]).mean().detach()
        logs.update({k: v.detach() for k, v in losses.items()})
        return (losses["rec"] + recipe["alpha"] * losses["reg"] + beta * losses.get("ccl", 0.0)
                + match_weight * losses.get("match", 0.0) + args.colour_weight * losses.get("colour", 0.0))

    logs = {}
    fixed = ExactPairs(args.data.partition(":")[2], resolution, 8, 4321,
                       args.pose)((0, 0, 0)) if args.data.startswith("synthetic:") else None
    if fixed is None:
        images = next(data_loader(args, accelerator, resolution, 16, 0, seed_offset=4321))["image"]
        fixed = (images[:8], images[8:])

    def training_step(step: int) -> dict:
        loss = update(accelerator, args, lambda micro: loss_fn(micro, step), [optimizer], networks)
        return {"loss": loss.detach(), **logs}

    run(accelerator, args, state, training_step, steps=args.steps or recipe["steps"], desc="coat",
        ema=list(zip(averages, networks)), beta=ema_beta(args, accelerator, batch, recipe["ema_half_life_images"]),
        sample=lambda: sample_grid(ema_pipe, fixed[0].to(device), fixed[1].to(device), n),
        export=lambda: ema_pipe, export_name="pipeline")


if __name__ == "__main__":
    main(parse_args())
