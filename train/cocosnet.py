"""Train CoCosNet (Zhang et al., CVPR 2020): correspondence network + translation network + D.

    accelerate launch train/cocosnet.py --config tiny --data synthetic:faces --output runs/cocosnet-faces
    python train/cocosnet.py --config tiny --data synthetic:faces --input edge --output runs/cocosnet-edges
    python train/cocosnet.py --config paper --data folder:PATH --num-classes 19 --output runs/cocosnet-paper

Objective (eq. 14): psi_1 L_feat + psi_2 L_perc + psi_3 L_context + psi_4 L_adv^G + psi_5 L_domain + psi_6 L_reg
(+ D feature matching, as in the authors' code). Pseudo exemplar pairs (eq. 8): with probability
`pseudo_prob` the exemplar is the ground-truth image under a random affine distortion and flip; otherwise
another image of the batch (a random exemplar). TTUR: Adam lr 1e-4 (G, correspondence) / 4e-4 (D),
betas (0, 0.999); the learning rate decays linearly to 0 over the second half of training.
State for --resume is saved atomically under OUTPUT/state; OUTPUT/pipeline is a `save_pretrained` folder of
the EMA networks (`CoCosNetPipeline.from_pretrained`).
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # plain `python train/...`

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from cocosnet import (CONFIGS, CoCosNetCorrespondence, CoCosNetDiscriminator, CoCosNetGenerator,  # noqa: E402
                      CoCosNetPipeline, network_configs)
from cocosnet import losses  # noqa: E402
from cocosnet.evaluate import figure5_grid, map_images  # noqa: E402
from cocosnet.pipeline import labels_to_input  # noqa: E402
from train.common import add_training_args, data_loader, ema_beta, fail, parse_training_args, resume, run, setup, update  # noqa: E402
from train.data import infinite_loader, make_dataset  # noqa: E402

# Loss weights follow the authors' released settings (../shared/reference/cocosnet.md); `tiny` shortens the schedule.
RECIPES = {
    "paper": dict(steps=200_000, batch_size=8, lr_g=1e-4, lr_d=4e-4, pseudo_prob=0.3, ema_half_life_images=10_000,
                  lambda_feat=10.0, lambda_perc=0.01, lambda_context=10.0, lambda_gan=10.0, lambda_d_feat=10.0,
                  lambda_domain=10.0, lambda_reg=1.0),
    "tiny": dict(steps=4_000, batch_size=8, lr_g=1e-4, lr_d=4e-4, pseudo_prob=0.5, ema_half_life_images=2_000,
                 lambda_feat=10.0, lambda_perc=0.01, lambda_context=1.0, lambda_gan=1.0, lambda_d_feat=10.0,
                 lambda_domain=10.0, lambda_reg=1.0),
}  # fmt: skip
RECIPES["micro"] = dict(RECIPES["tiny"], steps=4, batch_size=2)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(p, RECIPES, pose="aligned", save_every=250)
    p.add_argument("--input", default="mask", choices=["mask", "edge"],
                   help="input domain: one-hot label masks or edge maps")
    p.add_argument("--num-classes", type=int, default=None, help="classes of the label maps (default: from the data)")
    p.add_argument("--resolution", type=int, default=None, help="image size (default: the config's)")
    p.add_argument("--lr-g", type=float, default=None,
                   help="Adam lr of the correspondence + translation networks (default: the recipe's, 1e-4)")
    p.add_argument("--lr-d", type=float, default=None,
                   help="Adam lr of the discriminator (default: the recipe's, 4e-4)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe entry, e.g. --set lambda_feat=100 (repeatable)")
    return parse_training_args(p, argv)


# ------------------------------------------------------------------ data: input domains and exemplars


def distort(images: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """h(x_B) of section 3.3: a random affine warp (rotation +-15 deg, scale 0.85-1.15, shift +-10 %)
    and a random horizontal flip, reflect-padded: the pseudo exemplar."""
    b = len(images)
    r = lambda lo, hi: torch.rand(b, generator=generator) * (hi - lo) + lo  # noqa: E731
    angle, scale = r(-math.pi / 12, math.pi / 12), r(0.85, 1.15)
    flip = torch.where(torch.rand(b, generator=generator) < 0.5, -1.0, 1.0)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(angle) / scale * flip, -torch.sin(angle) / scale
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(angle) / scale * flip, torch.cos(angle) / scale
    theta[:, :, 2] = torch.stack([r(-0.2, 0.2), r(-0.2, 0.2)], 1)
    grid = F.affine_grid(theta.to(images), list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


# ------------------------------------------------------------------ training


def export_pipeline(corr_ema, gen_ema) -> CoCosNetPipeline:
    """The EMA networks, in float32, as the pipeline that OUTPUT/pipeline holds."""
    return CoCosNetPipeline(correspondence_network=copy.deepcopy(corr_ema).float().eval(),
                            generator=copy.deepcopy(gen_ema).float().eval())


def main(args) -> None:
    recipe = dict(RECIPES[args.config])
    for item in args.set:
        key, _, value = item.partition("=")
        if key not in recipe or not value:
            fail(f"--set {item!r}: use KEY=VALUE with KEY one of {', '.join(sorted(recipe))}")
        recipe[key] = type(recipe[key])(float(value)) if not isinstance(recipe[key], int) else int(float(value))
    accelerator = setup(args, "cocosnet")
    device = accelerator.device
    resolution = args.resolution or CONFIGS[args.config]["resolution"]
    class_names = getattr(make_dataset(args.data, resolution, pose=args.pose), "class_names", None)
    num_classes = args.num_classes or (len(class_names) if class_names else None)
    if num_classes is None and args.input == "mask":
        fail("the data names no classes: pass --num-classes")
    channels = num_classes if args.input == "mask" else 1
    corr_kwargs, gen_kwargs, disc_kwargs = network_configs(args.config, input_kind=args.input, input_channels=channels,
                                                           resolution=resolution, maskmix=False, warp_mask=False,
                                                           class_names=class_names if args.input == "mask" else None)
    corr_net, gen, disc = (CoCosNetCorrespondence(**corr_kwargs), CoCosNetGenerator(**gen_kwargs),
                           CoCosNetDiscriminator(**disc_kwargs))
    corr_ema, gen_ema = (copy.deepcopy(corr_net).eval().requires_grad_(False),
                         copy.deepcopy(gen).eval().requires_grad_(False))
    # D's segmentation head `dec` (kept for the authors' checkpoints) is in no loss here;
    # DDP must not wait for its gradients
    d_trained = [p for name, p in disc.named_parameters() if ".dec." not in name]
    for name, p in disc.named_parameters():
        p.requires_grad_(".dec." not in name)
    vgg = losses.vgg_features(device)

    steps = args.steps or recipe["steps"]
    lr_g, lr_d = args.lr_g or recipe["lr_g"], args.lr_d or recipe["lr_d"]
    opt_g = torch.optim.Adam(list(corr_net.parameters()) + list(gen.parameters()), lr=lr_g, betas=(0.0, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=lr_d, betas=(0.0, 0.999))
    corr_net, gen, disc, opt_g, opt_d = accelerator.prepare(corr_net, gen, disc, opt_g, opt_d)
    corr_ema.to(device)
    gen_ema.to(device)
    state = resume(accelerator, args, corr_ema, gen_ema)

    batch = args.batch_size or recipe["batch_size"]
    loader = data_loader(args, accelerator, resolution, batch, state.step)
    fixed = next(infinite_loader(make_dataset(args.data, resolution, seed=10_000 + args.seed, pose=args.pose), 4))
    if "labels" not in fixed:
        fail(f"{args.data} has no label maps: CoCosNet trains on (label map, image) pairs (PATH/labels/*.png)")
    fixed_maps = labels_to_input(fixed["labels"], args.input, num_classes).to(device)
    fixed_exemplars = fixed["image"].roll(1, 0).to(device)
    fixed_map_images = map_images(fixed["labels"].numpy(), args.input)
    unwrap = accelerator.unwrap_model

    def training_step(step: int) -> dict:
        decay = 1.0 if step < steps // 2 else max(0.0,
                                                  (steps - step) / max(1, steps - steps // 2))  # linear to 0, 2nd half
        for optimizer, lr in ((opt_g, lr_g), (opt_d, lr_d)):
            for group in optimizer.param_groups:
                group["lr"] = lr * decay
        pairs, terms = [], {}

        # ---- correspondence + translation: eq. (14)
        for p in d_trained:
            p.requires_grad_(False)

        def g_loss_fn(micro):
            item = next(loader)
            real = item["image"].to(device)  # x_B (B, 3, R, R)
            x = labels_to_input(item["labels"].to(device), args.input, num_classes)  # x_A (B, C, R, R)
            pseudo = torch.rand(len(real), device=device) < recipe["pseudo_prob"]
            exemplar = torch.where(pseudo[:, None, None, None], distort(real), real.roll(1, 0))  # y_B
            corr = corr_net(x, exemplar)
            fake = gen(corr.warped_exemplar, x)  # x_B-hat
            pairs.append((x, real, fake.detach()))
            # D is frozen here: call it unwrapped, so DDP expects no gradient for its parameters
            f_fake, d_fake = vgg(fake), unwrap(disc)(x, fake)
            with torch.no_grad():  # targets
                f_real, f_ex, d_real = vgg(real), vgg(exemplar), unwrap(disc)(x, real)
            image_features = F.normalize(unwrap(corr_net).adaptive_model_img(real), dim=1, eps=1e-16)
            terms.update({
                "perc": losses.perceptual_loss(f_fake, f_real),
                "context": losses.contextual_loss(f_fake, f_ex),
                "gan": losses.generator_hinge_loss(d_fake),
                "d_feat": losses.discriminator_feature_matching_loss(d_real, d_fake),
                "domain": losses.domain_alignment_loss(corr.input_features, image_features),
                "reg": losses.cycle_correspondence_loss(
                    unwrap(corr_net).cycle_warp(corr.query, corr.key, corr.warped_exemplar_lowres), exemplar),
            })
            terms.pop("feat", None)
            if pseudo.any():  # eq. (8) on the pseudo exemplar pairs only
                terms["feat"] = losses.feature_matching_loss({k: v[pseudo] for k, v in f_fake.items()},
                                                             {k: v[pseudo] for k, v in f_real.items()})
            return sum(recipe[f"lambda_{k}"] * v for k, v in terms.items())

        g_loss = update(accelerator, args, g_loss_fn, [opt_g], [corr_net, gen])

        # ---- discriminator: eq. (13), on this step's translations (no second generator pass)
        for p in d_trained:
            p.requires_grad_(True)

        def d_loss_fn(micro):
            x, real, fake = pairs[micro]
            return losses.discriminator_hinge_loss(disc(x, real), disc(x, fake))

        d_loss = update(accelerator, args, d_loss_fn, [opt_d], [disc])
        return {"d_loss": d_loss, "g_loss": g_loss, "lr_g": lr_g * decay, **terms}

    run(accelerator, args, state, training_step, steps=steps, desc="cocosnet",
        ema=[(corr_ema, corr_net),
             (gen_ema, gen)], beta=ema_beta(args, accelerator, batch, recipe["ema_half_life_images"]),
        sample=lambda: figure5_grid(CoCosNetPipeline(correspondence_network=corr_ema, generator=gen_ema), fixed_maps,
                                    fixed_map_images, fixed_exemplars),
        export=lambda: export_pipeline(corr_ema, gen_ema), export_name="pipeline")


if __name__ == "__main__":
    main(parse_args())
