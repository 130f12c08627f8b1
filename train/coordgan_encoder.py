"""CoordGAN stage 2: the encoder against the frozen generator (section 3.5, eq. 9-11).

    accelerate launch train/coordgan.py --stage encoder --config tiny --data synthetic:faces --output runs/coordgan-faces

Reads OUTPUT/generator (stage 1's export), writes OUTPUT/encoder and OUTPUT/pipeline.
L_E = l_con L_con + l_rec L_rec + l_t L_t with
  L_con = ||w_s - w_s,E||^2 + ||C^w - C^w_E||^2   on generated images          (eq. 9)
  L_rec = L1(x, G(E(x))) + LPIPS(x, G(E(x)))      on training images           (eq. 10)
  L_t   = LPIPS(G(w_s,E, w_t,E), G(w_s,E, w_t))   texture swap on the encoding  (eq. 4)
"""

from __future__ import annotations

import copy
import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator
from PIL import Image
from tqdm.auto import tqdm

from coordgan import losses
from coordgan.encoder import ENCODER_CONFIGS, CoordGANEncoder
from coordgan.model import CoordGANGenerator
from coordgan.visualize import correspondence_colors
from train.common import ema_update, export_folder, log_scalars, resumable_state, save_state_atomically
from train.data import infinite_loader, make_dataset, tensor_to_image


def train_encoder(args, recipe: dict, accelerator: Accelerator) -> None:
    device = accelerator.device
    generator_dir = os.path.join(args.output, "generator")
    if not os.path.isdir(generator_dir):
        raise ValueError(f"{generator_dir} does not exist: train the generator first (--stage generator)")
    generator = CoordGANGenerator.from_pretrained(generator_dir).to(device).eval().requires_grad_(False)
    config = dict(ENCODER_CONFIGS["paper" if args.config.startswith("paper") else "tiny"])
    config.update(resolution=generator.resolution, w_dim=generator.config.w_dim, num_ws=generator.num_ws)
    encoder = CoordGANEncoder(**config)
    encoder_ema = copy.deepcopy(encoder).eval().requires_grad_(False)
    perceptual = losses.perceptual_network("alex").to(device)
    opt = torch.optim.Adam(encoder.parameters(), lr=(args.lr or 1e-4 * 2), betas=(0.9, 0.99))
    encoder, opt = accelerator.prepare(encoder, opt)
    encoder_ema.to(device)
    state, state_dir = resumable_state(accelerator, args, encoder_ema, folder="encoder_state")

    batch = args.batch_size or recipe["batch_size"]
    steps = args.steps or recipe["encoder_steps"]
    data = make_dataset(args.data, generator.resolution, seed=args.seed + 10_000 + state.step, pose=args.pose, rank=accelerator.process_index, world_size=accelerator.num_processes)
    loader = infinite_loader(data, batch, num_workers=args.num_workers, seed=args.seed + accelerator.process_index + state.step)
    beta = 0.5 ** (batch * accelerator.num_processes / recipe["ema_half_life_images"])
    z_dim = generator.config.z_dim
    fixed = next(infinite_loader(make_dataset(args.data, generator.resolution, seed=4321, pose=args.pose), 6))["image"].to(device)
    os.makedirs(os.path.join(args.output, "samples"), exist_ok=True)
    log_path = os.path.join(args.output, "encoder_logs.jsonl")
    start_time = time.time()
    bar = tqdm(range(state.step, steps), initial=state.step, total=steps, disable=not accelerator.is_main_process, desc="coordgan encoder")
    for _ in bar:
        with accelerator.accumulate(encoder):
            real = next(loader)["image"].to(device)
            z_s, z_t = torch.randn(2, batch, z_dim, device=device).unbind(0)
            with torch.no_grad():
                target = generator(z_s, z_t)
            # eq. (9): latent consistency on generated images
            w_s_e, _ = encoder(target.image)
            consistency = F.mse_loss(w_s_e, target.structure_code) + F.mse_loss(generator.correspondence_map(w_s_e), target.correspondence_map)
            # eq. (10): reconstruction of training images
            w_s, w_t = encoder(real)
            cmap = generator.correspondence_map(w_s)
            reconstruction = generator.synthesize(cmap, w_t, randomize_noise=False)
            rec_l1 = F.l1_loss(reconstruction, real)
            rec_lpips = losses.lpips_distance(perceptual, reconstruction, real)
            # eq. (4) on the encoding: another texture must keep the encoded structure's layout
            swapped = generator.synthesize(cmap, generator.texture_code(z_t), randomize_noise=False)
            texture_swap = losses.texture_swap_loss(perceptual, reconstruction, swapped, args.texture_swap_distance)
            terms = {"consistency": consistency, "rec_l1": rec_l1, "rec_lpips": rec_lpips, "texture_swap": texture_swap}
            loss = (
                recipe["lambda_con"] * consistency
                + recipe["lambda_rec_l1"] * rec_l1
                + recipe["lambda_rec_lpips"] * rec_lpips
                + recipe["lambda_enc_t"] * texture_swap
            )
            accelerator.backward(loss)
            opt.step()
            opt.zero_grad(set_to_none=True)
        ema_update(encoder_ema, accelerator.unwrap_model(encoder), beta)
        state.step += 1
        step = state.step
        if step % args.log_every == 0 or step == steps:
            log_scalars(accelerator, log_path, step, {"loss": loss.item(), **{k: v.item() for k, v in terms.items()}})
            bar.set_postfix(loss=f"{loss.item():.3f}", l1=f"{rec_l1.item():.3f}")
        if accelerator.is_main_process and (step % args.sample_every == 0 or step == steps):
            Image.fromarray(reconstruction_grid(generator, encoder_ema, fixed)).save(os.path.join(args.output, "samples", f"encoder_{step:07d}.png"))
        out_of_time = args.max_minutes is not None and time.time() - start_time > 60 * args.max_minutes
        if step % args.save_every == 0 or step == steps or out_of_time:
            save_state_atomically(accelerator, state_dir)
            export_pipeline(accelerator, generator, encoder_ema, args)
        if out_of_time:
            accelerator.print(f"stopping at step {step}: --max-minutes {args.max_minutes} reached (resume with --resume)")
            break


@torch.no_grad()
def reconstruction_grid(generator: CoordGANGenerator, encoder: CoordGANEncoder, images: torch.Tensor) -> np.ndarray:
    """Rows: input, reconstruction, encoded correspondence map."""
    w_s, w_t = encoder(images)
    cmap = generator.correspondence_map(w_s)
    recon = generator.synthesize(cmap, w_t, randomize_noise=False)
    r = images.shape[-1]
    maps = correspondence_colors(F.interpolate(cmap.float(), size=(r, r), mode="nearest"))
    rows = [tensor_to_image(images), tensor_to_image(recon), maps]
    return np.concatenate([np.concatenate(list(row), 1) for row in rows], 0)


def export_pipeline(accelerator: Accelerator, generator, encoder_ema, args) -> None:
    if not accelerator.is_main_process:
        return
    from coordgan import CoordGANPipeline

    pipeline = CoordGANPipeline(generator=generator, encoder=copy.deepcopy(encoder_ema).float())
    export_folder(accelerator, pipeline, args.output, "pipeline", args.push_to_hub)
