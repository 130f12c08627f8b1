"""Train the StyleGAN2 generator G that GANgealing congeals (unaligned data, e.g. wide poses).

    accelerate launch train/stylegan2.py --config tiny --data synthetic:faces --pose wide --output runs/stylegan2-faces
    python train/stylegan2.py ...            (the same, one process)

Non-saturating GAN loss with lazy R1 (StyleGAN2), EMA generator. State for --resume is saved
atomically under OUTPUT/state; the EMA generator is exported with `save_pretrained` to
OUTPUT/generator (the --generator of train/gangealing.py).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # plain `python train/...`

import numpy as np  # noqa: E402
import torch  # noqa: E402
from accelerate import Accelerator  # noqa: E402
from accelerate.utils import set_seed  # noqa: E402
from PIL import Image  # noqa: E402
from tqdm.auto import tqdm  # noqa: E402

from coordgan.losses import discriminator_adversarial_loss, generator_adversarial_loss, r1_penalty  # noqa: E402
from gangealing.stylegan2 import GENERATOR_CONFIGS, StyleGAN2Discriminator, StyleGAN2Generator  # noqa: E402
from train.common import add_training_args, ema_update, log_scalars, parse_training_args, requires_grad, resumable_state, save_if_due  # noqa: E402
from train.data import infinite_loader, make_dataset, tensor_to_image  # noqa: E402

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
    accelerator = Accelerator(mixed_precision=args.mixed_precision, gradient_accumulation_steps=args.grad_accum)
    set_seed(args.seed + accelerator.process_index)
    os.makedirs(os.path.join(args.output, "samples"), exist_ok=True)
    device = accelerator.device
    g_config = GENERATOR_CONFIGS[args.config]
    generator = StyleGAN2Generator(**g_config)
    discriminator = StyleGAN2Discriminator(g_config["resolution"], g_config["channel_multiplier"], g_config.get("max_channels", 512))
    generator_ema = copy.deepcopy(generator).eval().requires_grad_(False)
    lr = args.lr or recipe["lr"]
    d_ratio = recipe["r1_every"] / (recipe["r1_every"] + 1)  # lazy regularisation correction
    opt_g = torch.optim.Adam(generator.parameters(), lr=lr, betas=(0.0, 0.99))
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=lr * d_ratio, betas=(0.0, 0.99**d_ratio))
    generator, discriminator, opt_g, opt_d = accelerator.prepare(generator, discriminator, opt_g, opt_d)
    state, state_dir = resumable_state(accelerator, args, generator_ema.to(device))

    batch = args.batch_size or recipe["batch_size"]
    steps = args.steps or recipe["steps"]
    data = make_dataset(args.data, g_config["resolution"], seed=args.seed + state.step, pose=args.pose,
                        rank=accelerator.process_index, world_size=accelerator.num_processes)
    loader = infinite_loader(data, batch, num_workers=args.num_workers, seed=args.seed + accelerator.process_index + state.step)
    style_dim = g_config["style_dim"]
    beta = 0.5 ** (batch * args.grad_accum * accelerator.num_processes / recipe["ema_half_life_images"])
    fixed_z = torch.randn(32, style_dim, generator=torch.Generator().manual_seed(1234)).to(device)
    log_path = os.path.join(args.output, "logs.jsonl")
    start = time.time()
    bar = tqdm(range(state.step, steps), initial=state.step, total=steps, disable=not accelerator.is_main_process, desc="stylegan2")
    for _ in bar:
        step = state.step
        for _micro in range(args.grad_accum):
            real = next(loader)["image"].to(device)
            # ---- discriminator: non-saturating loss, lazy R1 every r1_every steps
            requires_grad(generator, False)
            requires_grad(discriminator, True)
            with torch.no_grad():
                fake = generator(torch.randn(batch, style_dim, device=device))
            with accelerator.accumulate(discriminator):
                d_loss = discriminator_adversarial_loss(discriminator(real), discriminator(fake))
                if step % recipe["r1_every"] == 0:
                    real_r1 = real.detach().requires_grad_(True)
                    d_loss = d_loss + recipe["r1_gamma"] / 2 * r1_penalty(discriminator(real_r1), real_r1) * recipe["r1_every"]
                accelerator.backward(d_loss)
                opt_d.step()
                opt_d.zero_grad(set_to_none=True)
            # ---- generator
            requires_grad(generator, True)
            requires_grad(discriminator, False)
            with accelerator.accumulate(generator):
                z = torch.randn(batch, style_dim, device=device)
                mix = torch.randn(batch, style_dim, device=device)
                latents = [z, mix] if torch.rand(()) < 0.9 else z  # style mixing regularisation
                g_loss = generator_adversarial_loss(discriminator(generator(latents)))
                accelerator.backward(g_loss)
                opt_g.step()
                opt_g.zero_grad(set_to_none=True)
        ema_update(generator_ema, accelerator.unwrap_model(generator), beta)
        state.step += 1
        step = state.step
        if step % args.log_every == 0 or step == steps:
            log_scalars(accelerator, log_path, step, {"d_loss": d_loss.item(), "g_loss": g_loss.item()})
            bar.set_postfix(g=f"{g_loss.item():.3f}", d=f"{d_loss.item():.3f}")
        if accelerator.is_main_process and (step % args.sample_every == 0 or step == steps):
            with torch.no_grad():
                Image.fromarray(sample_grid(generator_ema, fixed_z)).save(os.path.join(args.output, "samples", f"step_{step:07d}.png"))
        if save_if_due(accelerator, args, step, steps, start, state_dir, lambda: generator_ema, "generator"):
            break
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    main(parse_args())
