"""CoordGAN stage 2: the encoder against the frozen generator (section 3.5, eq. 9-11).

    accelerate launch train/coordgan.py --stage encoder --config tiny --data synthetic:faces \\
        --output runs/coordgan-faces

Reads OUTPUT/generator (stage 1's export), writes OUTPUT/encoder and OUTPUT/pipeline.
L_E = l_con L_con + l_rec L_rec + l_t L_t with
  L_con = ||w_s - w_s,E||^2 + ||C^w - C^w_E||^2   on generated images          (eq. 9)
  L_rec = L1(x, G(E(x))) + LPIPS(x, G(E(x)))      on training images           (eq. 10)
  L_t   = LPIPS(G(w_s,E, w_t,E), G(w_s,E, w_t))   texture swap on the encoding  (eq. 4)
"""

from __future__ import annotations

import copy
import os

import numpy as np
import torch
import torch.nn.functional as F
from accelerate import Accelerator

from coordgan import CoordGANPipeline, losses
from coordgan.encoder import ENCODER_CONFIGS, CoordGANEncoder
from coordgan.model import CoordGANGenerator
from coordgan.visualize import correspondence_colors
from train.common import data_loader, ema_beta, fail, resume, run, update
from train.data import infinite_loader, make_dataset, tensor_to_image


def train_encoder(args, recipe: dict, accelerator: Accelerator) -> None:
    device = accelerator.device
    generator_dir = os.path.join(args.output, "generator")
    if not os.path.isdir(generator_dir):
        fail(f"{generator_dir} does not exist: train the generator first (--stage generator)")
    generator = CoordGANGenerator.from_pretrained(generator_dir).to(device).eval().requires_grad_(False)
    config = dict(ENCODER_CONFIGS["paper" if args.config.startswith("paper") else "tiny"])
    config.update(resolution=generator.resolution, w_dim=generator.config.w_dim, num_ws=generator.num_ws)
    encoder = CoordGANEncoder(**config)
    encoder_ema = copy.deepcopy(encoder).eval().requires_grad_(False)
    perceptual = losses.perceptual_network("alex").to(device)
    opt = torch.optim.Adam(encoder.parameters(), lr=(args.lr or 1e-4 * 2), betas=(0.9, 0.99))
    encoder, opt = accelerator.prepare(encoder, opt)
    encoder_ema.to(device)
    state = resume(accelerator, args, encoder_ema, folder="encoder_state")

    batch = args.batch_size or recipe["batch_size"]
    loader = data_loader(args, accelerator, generator.resolution, batch, state.step, seed_offset=10_000)
    z_dim = generator.config.z_dim
    fixed = next(infinite_loader(make_dataset(args.data, generator.resolution, seed=4321, pose=args.pose),
                                 6))["image"].to(device)

    def training_step(step: int) -> dict:
        terms = {}

        def loss_fn(micro):
            real = next(loader)["image"].to(device)
            z_s, z_t = torch.randn(2, batch, z_dim, device=device).unbind(0)
            with torch.no_grad():
                target = generator(z_s, z_t)
            # eq. (9): latent consistency on generated images
            w_s_e, _ = encoder(target.image)
            terms["consistency"] = (F.mse_loss(w_s_e, target.structure_code)
                                    + F.mse_loss(generator.correspondence_map(w_s_e), target.correspondence_map))
            # eq. (10): reconstruction of training images
            w_s, w_t = encoder(real)
            cmap = generator.correspondence_map(w_s)
            reconstruction = generator.synthesize(cmap, w_t, randomize_noise=False)
            terms["rec_l1"] = F.l1_loss(reconstruction, real)
            terms["rec_lpips"] = losses.lpips_distance(perceptual, reconstruction, real)
            # eq. (4) on the encoding: another texture must keep the encoded structure's layout
            swapped = generator.synthesize(cmap, generator.texture_code(z_t), randomize_noise=False)
            terms["texture_swap"] = losses.texture_swap_loss(perceptual, reconstruction, swapped,
                                                             args.texture_swap_distance)
            return (recipe["lambda_con"] * terms["consistency"]
                    + recipe["lambda_rec_l1"] * terms["rec_l1"]
                    + recipe["lambda_rec_lpips"] * terms["rec_lpips"]
                    + recipe["lambda_enc_t"] * terms["texture_swap"])

        loss = update(accelerator, args, loss_fn, [opt], [encoder])
        return {"loss": loss, **terms}

    run(accelerator, args, state, training_step, steps=args.steps or recipe["encoder_steps"], desc="coordgan encoder",
        ema=[(encoder_ema, encoder)], beta=ema_beta(args, accelerator, batch, recipe["ema_half_life_images"]),
        sample=lambda: reconstruction_grid(generator, encoder_ema, fixed), sample_prefix="encoder_",
        log_file="encoder_logs.jsonl",
        export=lambda: CoordGANPipeline(generator=generator, encoder=copy.deepcopy(encoder_ema).float()),
        export_name="pipeline")


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
