"""Train CoordGAN (Mu et al., CVPR 2022): the generator (stage 1), then the encoder (stage 2).

    accelerate launch train/coordgan.py --config tiny --data synthetic:faces --output runs/coordgan-faces
    accelerate launch train/coordgan.py --config tiny --data synthetic:faces --output runs/coordgan-faces --stage encoder
    python train/coordgan.py ...            (the same, one process)

Stage 1 objective (eq. 8): L_G = l_t L_t + l_s L_s + l_warp L_warp + l_cham L_cham + l_GAN L_GAN.
Stage 2 (eq. 11) trains the encoder against the frozen EMA generator of stage 1.
State for --resume is saved atomically under OUTPUT/state; exports are `save_pretrained` folders
OUTPUT/generator, OUTPUT/encoder and OUTPUT/pipeline (the latter loads with
`CoordGANPipeline.from_pretrained`).
"""

from __future__ import annotations

import argparse
import copy
import math
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

from coordgan import losses  # noqa: E402
from coordgan.discriminator import DISCRIMINATOR_CONFIGS, PATCH_CONFIGS, ImageDiscriminator, PatchDiscriminator  # noqa: E402
from coordgan.model import CONFIGS, CoordGANGenerator  # noqa: E402
from coordgan.visualize import correspondence_colors  # noqa: E402
from train.common import (  # noqa: E402
    add_training_args,
    ema_update,
    export_folder,
    log_scalars,
    parse_training_args,
    requires_grad,
    resumable_state,
    save_state_atomically,
)
from train.data import infinite_loader, make_dataset, tensor_to_image  # noqa: E402

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
        d_config["channels"] = tuple(DISCRIMINATOR_CONFIGS[size]["channels"][: int(math.log2(generator.resolution)) - 1])
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
    generator, discriminator, patch_discriminator, opt_g, opt_d = accelerator.prepare(generator, discriminator, patch_discriminator, opt_g, opt_d)
    generator_ema.to(device)
    state, state_dir = resumable_state(accelerator, args, generator_ema)

    batch = args.batch_size or recipe["batch_size"]
    steps = args.steps or recipe["steps"]
    data = make_dataset(args.data, generator_ema.resolution, seed=args.seed + state.step, pose=args.pose, rank=accelerator.process_index, world_size=accelerator.num_processes)
    loader = infinite_loader(data, batch, num_workers=args.num_workers, seed=args.seed + accelerator.process_index + state.step)
    z_dim = generator_ema.config.z_dim
    beta = 0.5 ** (batch * accelerator.num_processes / recipe["ema_half_life_images"])
    fixed = torch.Generator().manual_seed(1234)
    fixed_s, fixed_t = torch.randn(4, z_dim, generator=fixed).to(device), torch.randn(6, z_dim, generator=fixed).to(device)
    os.makedirs(os.path.join(args.output, "samples"), exist_ok=True)
    log_path = os.path.join(args.output, "logs.jsonl")
    start_time = time.time()
    bar = tqdm(range(state.step, steps), initial=state.step, total=steps, disable=not accelerator.is_main_process, desc="coordgan")
    for _ in bar:
        step = state.step
        patch_on = step >= recipe["patch_start"]
        for _micro in range(args.grad_accum):
            real = next(loader)["image"].to(device)
            z_s1, z_s2, z_t1, z_t2 = torch.randn(4, batch, z_dim, device=device).unbind(0)

            # ---- discriminators: L_GAN on images, L_s's patch co-occurrence on crops
            requires_grad(generator, False)
            requires_grad(discriminator, True)
            requires_grad(patch_discriminator, True)
            with torch.no_grad():
                fake_a = generator(z_s1, z_t1).image  # (z_s1, z_t1)
                fake_c = generator(z_s2, z_t1).image  # structure swapped, same texture
            with accelerator.accumulate(discriminator, patch_discriminator):
                d_loss = losses.discriminator_adversarial_loss(discriminator(real), discriminator(fake_a))
                if patch_on:
                    pd = patch_discriminator
                    real_logits = pd(pd.crops(real), pd.crops(real))
                    fake_logits = pd(pd.crops(fake_c), pd.crops(fake_a))
                    d_loss = d_loss + losses.discriminator_adversarial_loss(real_logits, fake_logits)
                if step % recipe["r1_every"] == 0:  # lazy R1, scaled by the interval
                    real_r1 = real.detach().requires_grad_(True)
                    r1 = losses.r1_penalty(discriminator(real_r1), real_r1)
                    reg = recipe["r1_gamma"] / 2 * r1
                    if patch_on:
                        target = pd.crops(real).detach().requires_grad_(True)
                        reference = pd.crops(real).detach().requires_grad_(True)
                        reg = reg + recipe["patch_r1"] / 2 * losses.r1_penalty(pd(target, reference), (target, reference))
                    d_loss = d_loss + reg * recipe["r1_every"]
                accelerator.backward(d_loss)
                opt_d.step()
                opt_d.zero_grad(set_to_none=True)

            # ---- generator: eq. (8)
            requires_grad(generator, True)
            requires_grad(discriminator, False)
            requires_grad(patch_discriminator, False)
            with accelerator.accumulate(generator):
                a = generator(z_s1, z_t1)
                b = generator(z_s1, z_t2)  # same structure, other texture: L_t
                c = generator(z_s2, z_t1)  # other structure, same texture: L_s and L_warp
                ramp = losses.ramp(step, recipe["loss_ramp"])
                gan_weight = recipe["lambda_gan"] * max(losses.ramp(step, recipe["gan_ramp"]), 0.5)
                terms = {
                    "gan": losses.generator_adversarial_loss(discriminator(torch.cat([a.image, b.image, c.image]))),
                    "texture_swap": losses.texture_swap_loss(perceptual, a.image, b.image, args.texture_swap_distance),
                    "warp": losses.warp_loss(perceptual, a.image, a.correspondence_map, c.image, c.correspondence_map, recipe["warp_temperature"]),
                    "chamfer": losses.chamfer_loss(torch.cat([a.correspondence_map, c.correspondence_map])),
                }
                weights = {"gan": gan_weight, "texture_swap": recipe["lambda_t"] * ramp, "warp": recipe["lambda_warp"] * ramp, "chamfer": recipe["lambda_cham"]}
                if patch_on:
                    pd = patch_discriminator
                    terms["structure_swap"] = losses.structure_swap_loss(pd(pd.crops(c.image), pd.crops(a.image)))
                    weights["structure_swap"] = recipe["lambda_s"]
                g_loss = sum(weights[k] * terms[k] for k in terms)
                accelerator.backward(g_loss)
                opt_g.step()
                opt_g.zero_grad(set_to_none=True)
        ema_update(generator_ema, accelerator.unwrap_model(generator), beta)
        state.step += 1
        step = state.step

        if step % args.log_every == 0 or step == steps:
            scalars = {"d_loss": d_loss.item(), "g_loss": g_loss.item(), **{k: v.item() for k, v in terms.items()}}
            log_scalars(accelerator, log_path, step, scalars)
            bar.set_postfix(g=f"{g_loss.item():.2f}", d=f"{d_loss.item():.2f}", warp=f"{terms['warp'].item():.3f}")
        if accelerator.is_main_process and (step % args.sample_every == 0 or step == steps):
            with torch.no_grad():
                grid = swap_grid(generator_ema, fixed_s, fixed_t)
            Image.fromarray(grid).save(os.path.join(args.output, "samples", f"step_{step:07d}.png"))
        out_of_time = args.max_minutes is not None and time.time() - start_time > 60 * args.max_minutes
        if step % args.save_every == 0 or step == steps or out_of_time:
            save_state_atomically(accelerator, state_dir)
            export_generator(accelerator, generator_ema, args.output)
        if out_of_time:
            accelerator.print(f"stopping at step {step}: --max-minutes {args.max_minutes} reached (resume with --resume)")
            break


def export_generator(accelerator: Accelerator, generator_ema: CoordGANGenerator, output: str) -> None:
    """OUTPUT/generator: the EMA generator in float32 with fresh code means (for truncation)."""
    if not accelerator.is_main_process:
        return
    export = copy.deepcopy(generator_ema).float()
    export.update_code_means(generator=torch.Generator().manual_seed(0))
    export_folder(accelerator, export, output, "generator")


def main(args) -> None:
    recipe = RECIPES[args.config]
    accelerator = Accelerator(mixed_precision=args.mixed_precision, gradient_accumulation_steps=args.grad_accum)
    set_seed(args.seed + accelerator.process_index)
    os.makedirs(args.output, exist_ok=True)
    if args.stage == "generator":
        train_generator(args, recipe, accelerator)
    else:
        from train.coordgan_encoder import train_encoder

        train_encoder(args, recipe, accelerator)
    accelerator.wait_for_everyone()
    accelerator.end_training()


if __name__ == "__main__":
    main(parse_args())
