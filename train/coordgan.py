"""Train CoordGAN (Mu et al., CVPR 2022): the generator (stage 1), then the encoder (stage 2).

    accelerate launch train/coordgan.py --config tiny --data synthetic:faces --output runs/coordgan-faces
    accelerate launch train/coordgan.py --config tiny --data synthetic:faces --output runs/coordgan-faces \\
        --stage encoder
    python train/coordgan.py ...            (the same, one process)

Stage 1 objective (eq. 8): L_G = l_t L_t + l_s L_s + l_warp L_warp + l_cham L_cham + l_GAN L_GAN.
Stage 2 (eq. 11) trains the encoder against the frozen EMA generator of stage 1.
States for --resume are saved under OUTPUT/state (train/common.py); exports are `save_pretrained` folders
OUTPUT/generator, OUTPUT/encoder and OUTPUT/pipeline (the latter loads with
`CoordGANPipeline.from_pretrained`).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # plain `python train/...`

import numpy as np  # noqa: E402
import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402

from coordgan import losses  # noqa: E402
from coordgan.discriminator import DISCRIMINATOR_CONFIGS, PATCH_CONFIGS, ImageDiscriminator, PatchDiscriminator  # noqa: E402
from coordgan.model import CONFIGS, CoordGANGenerator  # noqa: E402
from coordgan.visualize import correspondence_colors  # noqa: E402
from train.common import (add_training_args, data_loader, ema_beta, parse_training_args, requires_grad,  # noqa: E402
                          resume, run, setup, update)
from train.data import tensor_to_image  # noqa: E402

# Training recipes. `paper` follows the authors' released settings (../shared/reference/coordgan.md);
# `tiny` shrinks the schedules: the bundled checkpoint took 3,182 generator steps (about 100 min on 2
# CPU threads) and 1,838 encoder steps (21 min); the step counts below are those, rounded.
RECIPES = {
    "paper": dict(steps=300_000, batch_size=16, lr=0.002, r1_gamma=10.0, r1_every=16, patch_r1=1.0,
                  ema_half_life_images=10_000, patch_start=10_000, loss_ramp=20_000, gan_ramp=10_000,
                  warp_temperature=1.5e-4, lambda_gan=2.0, lambda_t=5.0, lambda_s=1.0, lambda_warp=5.0,
                  lambda_cham=200.0, encoder_steps=600_000, lambda_con=10.0, lambda_rec_l1=10.0, lambda_rec_lpips=10.0,
                  lambda_enc_t=5.0),
    "tiny": dict(steps=3_200, batch_size=8, lr=0.002, r1_gamma=0.5, r1_every=16, patch_r1=1.0,
                 ema_half_life_images=2_000, patch_start=1_000, loss_ramp=1_500, gan_ramp=1_000,
                 warp_temperature=2.5e-3, lambda_gan=2.0, lambda_t=5.0, lambda_s=1.0, lambda_warp=5.0,
                 lambda_cham=200.0, encoder_steps=1_800, lambda_con=10.0, lambda_rec_l1=10.0, lambda_rec_lpips=10.0,
                 lambda_enc_t=5.0),
}  # fmt: skip
RECIPES["paper-512"] = RECIPES["paper"]


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(p, CONFIGS, pose="aligned", save_every=250)
    p.add_argument("--stage", default="generator", choices=["generator", "encoder"], help="what to train")
    p.add_argument("--lr", type=float, default=None, help="base learning rate (default: the recipe's)")
    p.add_argument("--texture-swap-distance", default="lpips", choices=["lpips", "edges"],
                   help="distance of the texture-swap loss (eq. 4): lpips as in the paper, or edges, a colour-blind "
                        "stand-in for machines without LPIPS's ImageNet weights (see bench/perceptual_fallback.py)")
    return parse_training_args(p, argv)


def swap_grid(generator: CoordGANGenerator, z_s: torch.Tensor, z_t: torch.Tensor) -> np.ndarray:
    """Figure 1 layout: rows share a structure code, columns a texture code; the last column is
    the row's correspondence map."""
    rows, cols = len(z_s), len(z_t)
    out = generator(z_s.repeat_interleave(cols, 0), z_t.repeat(rows, 1), randomize_noise=False)
    images = tensor_to_image(out.image)  # (rows * cols, H, W, 3)
    r = images.shape[1]
    cmap = torch.nn.functional.interpolate(out.correspondence_map[::cols].float(), size=(r, r), mode="nearest")
    maps = correspondence_colors(cmap)  # (rows, H, W, 3)
    tiles = np.concatenate([images.reshape(rows, cols, r, r, 3), maps[:, None]], 1)
    return tiles.transpose(0, 2, 1, 3, 4).reshape(rows * r, (cols + 1) * r, 3)


def train_generator(args, recipe: dict, accelerator: Accelerator) -> None:
    device = accelerator.device
    generator = CoordGANGenerator(**CONFIGS[args.config])
    size = "paper" if args.config.startswith("paper") else "tiny"
    d_config = dict(DISCRIMINATOR_CONFIGS[size], resolution=generator.resolution)
    if len(d_config["channels"]) != int(math.log2(generator.resolution)) - 1:
        d_config["channels"] = tuple(
            DISCRIMINATOR_CONFIGS[size]["channels"][: int(math.log2(generator.resolution)) - 1])
    discriminator = ImageDiscriminator(**d_config)
    patch_discriminator = PatchDiscriminator(**PATCH_CONFIGS[size])
    generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
    perceptual = losses.perceptual_network("alex").to(device)

    lr = args.lr or recipe["lr"]
    d_ratio = recipe["r1_every"] / (recipe["r1_every"] + 1)  # lazy regularisation correction
    g_ratio = 0.8  # the authors' setting (a path-length ratio of 4 / 5, kept without the penalty)
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr * g_ratio, betas=(0.0, 0.99**g_ratio))
    d_params = list(discriminator.parameters()) + list(patch_discriminator.parameters())
    opt_d = torch.optim.Adam(d_params, lr=lr * d_ratio, betas=(0.0, 0.99**d_ratio))
    generator, discriminator, patch_discriminator, opt_g, opt_d = accelerator.prepare(
        generator, discriminator, patch_discriminator, opt_g, opt_d)
    generator_ema.to(device)
    state = resume(accelerator, args, generator_ema)

    batch = args.batch_size or recipe["batch_size"]
    loader = data_loader(args, accelerator, generator_ema.resolution, batch, state.step)
    z_dim = generator_ema.config.z_dim
    fixed = torch.Generator().manual_seed(1234)
    fixed_s, fixed_t = torch.randn(4, z_dim,
                                   generator=fixed).to(device), torch.randn(6, z_dim, generator=fixed).to(device)
    pd = patch_discriminator

    def training_step(step: int) -> dict:
        patch_on = step >= recipe["patch_start"]
        codes = []  # per micro-batch (z_s1, z_s2, z_t1, z_t2), shared by the D and G updates

        # ---- discriminators: L_GAN on images, L_s's patch co-occurrence on crops
        requires_grad(generator, False)
        requires_grad(discriminator, True)
        requires_grad(patch_discriminator, True)

        def d_loss_fn(micro):
            real = next(loader)["image"].to(device)
            codes.append(torch.randn(4, batch, z_dim, device=device).unbind(0))
            z_s1, z_s2, z_t1, _ = codes[micro]
            with torch.no_grad():
                fake_a = generator(z_s1, z_t1).image  # (z_s1, z_t1)
                fake_c = generator(z_s2, z_t1).image  # structure swapped, same texture
            loss = losses.discriminator_adversarial_loss(discriminator(real), discriminator(fake_a))
            if patch_on:
                loss = loss + losses.discriminator_adversarial_loss(pd(pd.crops(real), pd.crops(real)),
                                                                    pd(pd.crops(fake_c), pd.crops(fake_a)))
            if step % recipe["r1_every"] == 0:  # lazy R1, scaled by the interval
                real_r1 = real.detach().requires_grad_(True)
                reg = recipe["r1_gamma"] / 2 * losses.r1_penalty(discriminator(real_r1), real_r1)
                if patch_on:
                    target = pd.crops(real).detach().requires_grad_(True)
                    reference = pd.crops(real).detach().requires_grad_(True)
                    reg = reg + recipe["patch_r1"] / 2 * losses.r1_penalty(pd(target, reference), (target, reference))
                loss = loss + reg * recipe["r1_every"]
            return loss

        d_loss = update(accelerator, args, d_loss_fn, [opt_d], [discriminator, patch_discriminator])

        # ---- generator: eq. (8)
        requires_grad(generator, True)
        requires_grad(discriminator, False)
        requires_grad(patch_discriminator, False)
        terms = {}

        def g_loss_fn(micro):
            z_s1, z_s2, z_t1, z_t2 = codes[micro]
            a = generator(z_s1, z_t1)
            b = generator(z_s1, z_t2)  # same structure, other texture: L_t
            c = generator(z_s2, z_t1)  # other structure, same texture: L_s and L_warp
            ramp = losses.ramp(step, recipe["loss_ramp"])
            terms["gan"] = losses.generator_adversarial_loss(discriminator(torch.cat([a.image, b.image, c.image])))
            terms["texture_swap"] = losses.texture_swap_loss(perceptual, a.image, b.image, args.texture_swap_distance)
            terms["warp"] = losses.warp_loss(perceptual, a.image, a.correspondence_map, c.image, c.correspondence_map,
                                             recipe["warp_temperature"])
            terms["chamfer"] = losses.chamfer_loss(torch.cat([a.correspondence_map, c.correspondence_map]))
            weights = {"gan": recipe["lambda_gan"] * max(losses.ramp(step, recipe["gan_ramp"]), 0.5),
                       "texture_swap": recipe["lambda_t"] * ramp, "warp": recipe["lambda_warp"] * ramp,
                       "chamfer": recipe["lambda_cham"]}
            if patch_on:
                terms["structure_swap"] = losses.structure_swap_loss(pd(pd.crops(c.image), pd.crops(a.image)))
                weights["structure_swap"] = recipe["lambda_s"]
            return sum(weights[k] * terms[k] for k in terms)

        g_loss = update(accelerator, args, g_loss_fn, [opt_g], [generator])
        return {"d_loss": d_loss, "g_loss": g_loss, **terms}

    run(accelerator, args, state, training_step, steps=args.steps or recipe["steps"], desc="coordgan",
        ema=[(generator_ema, generator)], beta=ema_beta(args, accelerator, batch, recipe["ema_half_life_images"]),
        sample=lambda: swap_grid(generator_ema, fixed_s, fixed_t), export=lambda: generator_export(generator_ema),
        export_name="generator")


def generator_export(generator_ema: CoordGANGenerator) -> CoordGANGenerator:
    """OUTPUT/generator: the EMA generator in float32 with fresh code means (for truncation)."""
    export = copy.deepcopy(generator_ema).float()
    export.update_code_means(generator=torch.Generator().manual_seed(0))
    return export


def main(args) -> None:
    recipe = RECIPES[args.config]
    accelerator = setup(args, f"coordgan-{args.stage}")
    if args.stage == "generator":
        train_generator(args, recipe, accelerator)
    else:
        from train.coordgan_encoder import train_encoder

        train_encoder(args, recipe, accelerator)


if __name__ == "__main__":
    main(parse_args())
