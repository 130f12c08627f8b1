"""Train the StyleGAN2 generator G that GANgealing congeals (unaligned data, e.g. wide poses).

    accelerate launch train/stylegan2.py --config tiny --data synthetic:faces --pose wide --output runs/stylegan2-faces
    python train/stylegan2.py ...            (the same, one process)

Non-saturating GAN loss with lazy R1 (StyleGAN2), EMA generator. States for --resume are saved
under OUTPUT/state (train/common.py); the EMA generator is exported with `save_pretrained` to
OUTPUT/generator (the --generator of train/gangealing.py).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # plain `python train/...`

import numpy as np  # noqa: E402
import torch  # noqa: E402

from coordgan.losses import discriminator_adversarial_loss, generator_adversarial_loss, r1_penalty  # noqa: E402
from gangealing.stylegan2 import GENERATOR_CONFIGS, StyleGAN2Discriminator, StyleGAN2Generator  # noqa: E402
from train.common import (add_training_args, data_loader, ema_beta, parse_training_args, requires_grad,  # noqa: E402
                          resume, run, setup, update)
from train.data import tensor_to_image  # noqa: E402

# `paper`: StyleGAN2 config-f at 256 px as the authors trained it; `tiny`/`micro`: CPU-sized.
RECIPES = {
    "paper": dict(steps=800_000, batch_size=32, lr=0.002, r1_gamma=10.0, r1_every=16, ema_half_life_images=10_000),
    "paper-128": dict(steps=800_000, batch_size=32, lr=0.002, r1_gamma=10.0, r1_every=16, ema_half_life_images=10_000),
    "tiny": dict(steps=20_000, batch_size=16, lr=0.0025, r1_gamma=0.2, r1_every=16, ema_half_life_images=5_000),
    "micro": dict(steps=11_000, batch_size=16, lr=0.0025, r1_gamma=0.1, r1_every=16, ema_half_life_images=2_000),
}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(p, RECIPES, pose="wide", save_every=500)
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the recipe's)")
    return parse_training_args(p, argv)


def sample_grid(generator: StyleGAN2Generator, z: torch.Tensor, cols: int = 8) -> np.ndarray:
    images = tensor_to_image(generator(z, randomize_noise=False))  # (n, R, R, 3)
    n, r = len(images), images.shape[1]
    rows = n // cols
    return images[: rows * cols].reshape(rows, cols, r, r, 3).transpose(0, 2, 1, 3, 4).reshape(rows * r, cols * r, 3)


def main(args) -> None:
    recipe = RECIPES[args.config]
    accelerator = setup(args, "stylegan2")
    device = accelerator.device
    g_config = GENERATOR_CONFIGS[args.config]
    generator = StyleGAN2Generator(**g_config)
    discriminator = StyleGAN2Discriminator(g_config["resolution"], g_config["channel_multiplier"],
                                           g_config.get("max_channels", 512))
    generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
    lr = args.lr or recipe["lr"]
    d_ratio = recipe["r1_every"] / (recipe["r1_every"] + 1)  # lazy regularisation correction
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr * d_ratio, betas=(0.0, 0.99**d_ratio))
    generator, discriminator, opt_g, opt_d = accelerator.prepare(generator, discriminator, opt_g, opt_d)
    state = resume(accelerator, args, generator_ema.to(device))

    batch = args.batch_size or recipe["batch_size"]
    loader = data_loader(args, accelerator, g_config["resolution"], batch, state.step)
    style_dim = g_config["style_dim"]
    fixed_z = torch.randn(32, style_dim, generator=torch.Generator().manual_seed(1234)).to(device)

    def training_step(step: int) -> dict:
        # ---- discriminator: non-saturating loss, lazy R1 every r1_every steps
        requires_grad(generator, False)
        requires_grad(discriminator, True)

        def d_loss_fn(micro):
            real = next(loader)["image"].to(device)
            with torch.no_grad():
                fake = generator(torch.randn(batch, style_dim, device=device))
            loss = discriminator_adversarial_loss(discriminator(real), discriminator(fake))
            if step % recipe["r1_every"] == 0:
                real_r1 = real.detach().requires_grad_(True)
                loss = loss + recipe["r1_gamma"] / 2 * r1_penalty(discriminator(real_r1), real_r1) * recipe["r1_every"]
            return loss

        d_loss = update(accelerator, args, d_loss_fn, [opt_d], [discriminator])
        # ---- generator, with style mixing regularisation
        requires_grad(generator, True)
        requires_grad(discriminator, False)

        def g_loss_fn(micro):
            z = torch.randn(batch, style_dim, device=device)
            mix = torch.randn(batch, style_dim, device=device)
            latents = [z, mix] if torch.rand(()) < 0.9 else z
            return generator_adversarial_loss(discriminator(generator(latents)))

        g_loss = update(accelerator, args, g_loss_fn, [opt_g], [generator])
        return {"d_loss": d_loss, "g_loss": g_loss}

    run(accelerator, args, state, training_step, steps=args.steps or recipe["steps"], desc="stylegan2",
        ema=[(generator_ema, generator)], beta=ema_beta(args, accelerator, batch, recipe["ema_half_life_images"]),
        sample=lambda: sample_grid(generator_ema, fixed_z), export=lambda: generator_ema, export_name="generator")


if __name__ == "__main__":
    main(parse_args())
