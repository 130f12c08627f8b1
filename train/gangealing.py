"""Train GANgealing (Peebles et al., CVPR 2022): the spatial transformer T and the learned
target c against a frozen StyleGAN2 generator G (train/stylegan2.py makes one).

    accelerate launch train/gangealing.py --config tiny --generator runs/stylegan2-faces/generator \\
        --data synthetic:faces --output runs/gangealing-faces --grad-accum 5
    python train/gangealing.py ...            (the same, one process)

Objective (eq. 5): l(T(G(w)), G(mix(c, w))) + lambda_TV L_TV(T) + lambda_I L_I(T), with
c = mean_w + sum_i alpha_i d_i (eq. 4) over the top principal directions of W, psi annealed from
1 to 0 (cosine) and the mixing cutoff `inject`. The paper's total batch is 40 (reach it with
--grad-accum). Real images (--data) are only used for the sample grids: their average before
and after congealing. Exports OUTPUT/pipeline (GANgealingPipeline.from_pretrained).

K > 1 clusters (eq. 6) take a second stage, the cluster classifier that picks a cluster (and a
mirror) for real images (train/gangealing_classifier.py):

    python train/gangealing.py --config tiny --generator G --output runs/gg-k2 --num-heads 2
    python train/gangealing.py --config tiny --stage classifier --output runs/gg-k2
    (reads runs/gg-k2/pipeline, exports runs/gg-k2/pipeline-classifier)
"""

from __future__ import annotations

import argparse
import copy
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # plain `python train/...`

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gangealing import GANgealingPipeline, LearnedTarget, SpatialTransformer, StyleGAN2Generator  # noqa: E402
from gangealing.losses import congealing_loss, perceptual_network  # noqa: E402
from gangealing.target import psi_schedule  # noqa: E402
from gangealing.transformer import TRANSFORMER_CONFIGS  # noqa: E402
from train.common import add_training_args, ema_beta, parse_training_args, resume, run, setup, update  # noqa: E402
from train import gangealing_classifier  # noqa: E402
from train.data import infinite_loader, make_dataset, tensor_to_image  # noqa: E402

# `paper`: the authors' release scripts (256 px, LPIPS-VGG, lambda_TV 2500, batch 5 x 8 GPUs).
RECIPES = {
    "paper": dict(steps=1_500_000, batch_size=5, lr=1e-3, target_lr=1e-2, anneal_steps=150_000, lambda_tv=2500.0,
                  lambda_identity=1.0, ndirs=1, inject=5, ema_half_life_images=10_000),
    "paper-128": dict(steps=1_500_000, batch_size=5, lr=1e-3, target_lr=1e-2, anneal_steps=150_000, lambda_tv=2500.0,
                      lambda_identity=1.0, ndirs=512, inject=6, ema_half_life_images=10_000),
    "tiny": dict(steps=4_000, batch_size=8, lr=1e-3, target_lr=1e-2, anneal_steps=1_000, lambda_tv=2500.0,
                 lambda_identity=1.0, ndirs=1, inject=4, ema_half_life_images=2_000),
    # micro: the bundled checkpoints/gangealing-faces run. Ours, for a 1-2 hour CPU budget: batch 16 (not 40),
    # lr 3e-3 and anneal 400 (a run with the paper's lr 1e-3 and anneal 1,000 reached 20.3 against 27.1
    # validation PCK@0.1 after 2,250 steps).
    "micro": dict(steps=5_600, batch_size=16, lr=3e-3, target_lr=1e-2, anneal_steps=400, lambda_tv=2500.0,
                  lambda_identity=1.0, ndirs=1, inject=3, ema_half_life_images=1_000),
}  # fmt: skip
TRANSFORMER_FOR = {"paper": "paper", "paper-128": "paper", "tiny": "tiny", "micro": "micro"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_training_args(p, RECIPES, pose="wide", save_every=500)
    p.add_argument("--stage", default="transformer", choices=["transformer", "classifier"],
                   help="transformer: T and the targets c_k; classifier: the cluster classifier of a K > 1 model "
                   "(frozen G, T, c from --pipeline), exported as OUTPUT/pipeline-classifier; its default --steps: "
                   "100k paper, 2k tiny, 500 micro (ours, not the paper's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default: the recipe's; classifier 1e-3)")
    p.add_argument("--generator", default=None,
                   help="folder (or Hub id) of a StyleGAN2Generator save_pretrained export "
                   "(--stage transformer)")
    p.add_argument("--pipeline", default=None,
                   help="--stage classifier: the K > 1 GANgealingPipeline export to classify "
                   "for (default OUTPUT/pipeline)")
    p.add_argument("--heldout-samples", type=int, default=512,
                   help="--stage classifier: held-out fakes for the final accuracy")
    p.add_argument("--inject", type=int, default=None,
                   help="mixing cutoff: W+ layers fed by the target (default: recipe's)")
    p.add_argument("--ndirs", type=int, default=None, help="principal directions of W spanning the target (eq. 4)")
    p.add_argument("--anneal-steps", type=int, default=None, help="steps over which psi goes from 1 to 0")
    p.add_argument("--lambda-tv", type=float, default=None, help="weight of the flow's total variation, stated for the "
                   "paper's 128 x 128 flow grid (default: the recipe's, 2500); scaled by (flow_size / 128)^2 for "
                   "other grids")
    p.add_argument("--lambda-identity", type=float, default=None, help="weight of ||flow||^2")
    p.add_argument("--num-heads", type=int, default=1, help="K clusters (eq. 6); for K > 1, run --stage classifier "
                   "afterwards so real images get a cluster")
    p.add_argument("--perceptual", default="vgg", choices=["vgg", "alex", "squeeze"],
                   help="LPIPS trunk (the classifier "
                   "stage labels clusters with it: use the transformer stage's)")
    p.add_argument("--pca-samples", type=int, default=20_000, help="samples of W for the principal directions")
    args = parse_training_args(p, argv)
    if args.stage == "transformer" and args.generator is None:
        p.error("--stage transformer needs --generator (a StyleGAN2Generator export)")
    return args


def scaled_tv_weight(lambda_tv: float, flow_size: int,
                     paper_flow_size: int = TRANSFORMER_CONFIGS["paper"]["flow_size"]) -> float:
    """lambda_TV for a flow grid of `flow_size`, from the paper's value at 128 x 128. The flow is in
    normalised coordinates, so one smooth warp has neighbour differences paper_flow_size / flow_size
    times larger on a coarser grid, and the Huber TV (quadratic there) grows with their square:
    scaling by (flow_size / paper_flow_size)^2 makes a given warp cost the same on every grid."""
    return lambda_tv * (flow_size / paper_flow_size) ** 2


def congealing_grid(generator, transformer, target, w, psi, real, out_res) -> np.ndarray:
    """Rows: G(w), T(G(w)), the target G(mix(c, w)) (cluster 0 when K > 1); last column: the
    average real image before and after congealing (section 4, 'average congealed image')."""
    x = generator.synthesis(w[:, None].expand(-1, generator.num_latents, -1), randomize_noise=False)
    congealed = transformer(x, output_resolution=out_res).congealed
    y = generator.synthesis(target(w, psi, unfold=True)[:, 0], randomize_noise=False)
    rows = [tensor_to_image(t) for t in (x, congealed, y)]  # each (n, R, R, 3)
    r = rows[0].shape[1]
    grid = np.concatenate([np.concatenate(list(row), 1) for row in rows], 0)
    before = tensor_to_image(real.mean(0))
    after = tensor_to_image(transformer(real, output_resolution=out_res).congealed.mean(0))
    averages = np.zeros((3 * r, r, 3), np.uint8)
    averages[:r], averages[r : 2 * r] = before, after
    return np.concatenate([grid, averages], 1)


def main(args) -> None:
    if args.stage == "classifier":
        return gangealing_classifier.main(args, batch_size=RECIPES[args.config]["batch_size"])
    recipe = {**RECIPES[args.config],
              **{k: v for k, v in dict(inject=args.inject, ndirs=args.ndirs, anneal_steps=args.anneal_steps,
              lambda_tv=args.lambda_tv, lambda_identity=args.lambda_identity).items() if v is not None}}
    accelerator = setup(args, "gangealing")
    device = accelerator.device

    generator = StyleGAN2Generator.from_pretrained(args.generator).eval().requires_grad_(False).to(device)
    res = generator.resolution
    t_config = dict(TRANSFORMER_CONFIGS[TRANSFORMER_FOR[args.config]])
    if t_config["input_size"] != res:
        t_config.update(input_size=res, flow_size=min(res, 128))
    lambda_tv = scaled_tv_weight(recipe["lambda_tv"], t_config["flow_size"])
    k = args.num_heads
    transformer = SpatialTransformer(**{**t_config, "num_heads": k})
    target = LearnedTarget(num_directions=recipe["ndirs"], num_heads=k, inject_index=recipe["inject"],
                           num_latents=generator.num_latents, style_dim=generator.style_dim)
    with torch.no_grad():  # eq. 4: mean and principal directions of W
        pca_gen = torch.Generator().manual_seed(args.seed)
        target.fit_pca(generator.mapping(torch.randn(args.pca_samples, generator.style_dim,
                                                     generator=pca_gen).to(device)).cpu())
    transformer_ema = copy.deepcopy(transformer).eval().requires_grad_(False)
    perceptual = perceptual_network(args.perceptual).to(device)
    opt_t = torch.optim.Adam(transformer.parameters(), lr=args.lr or recipe["lr"], betas=(0.9, 0.999))
    opt_c = torch.optim.Adam(target.parameters(), lr=recipe["target_lr"], betas=(0.9, 0.999))
    transformer, target, opt_t, opt_c = accelerator.prepare(transformer, target, opt_t, opt_c)
    state = resume(accelerator, args, transformer_ema.to(device))

    batch = args.batch_size or recipe["batch_size"]
    data = make_dataset(args.data, res, seed=args.seed + 999, pose=args.pose)
    real = next(infinite_loader(data, 16, seed=args.seed))["image"].to(device)  # fixed, for the average images
    fixed_w = generator.mapping(torch.randn(8, generator.style_dim,
                                            generator=torch.Generator().manual_seed(1234)).to(device))

    def training_step(step: int) -> dict:
        psi = psi_schedule(step, recipe["anneal_steps"])
        terms = {}

        def loss_fn(micro):
            with torch.no_grad():
                w = generator.mapping(torch.randn(batch, generator.style_dim, device=device))
                x = generator.synthesis(w[:, None].expand(-1, generator.num_latents, -1), randomize_noise=False)  # G(w)
            y = generator.synthesis(target(w, psi),
                                    randomize_noise=False)  # G(mix(c_k, w)), (B*K) rows: gradients reach alpha
            heads = torch.arange(k, device=device).repeat(batch)  # every sample through every head (n-major)
            out = transformer(x.repeat_interleave(k, 0), heads=heads, output_resolution=res)
            loss, parts, _ = congealing_loss(perceptual, out.congealed, y, out.residual_flow, k, lambda_tv,
                                             recipe["lambda_identity"])
            terms.update(parts)
            return loss

        loss = update(accelerator, args, loss_fn, [opt_t, opt_c], [transformer, target])
        return {"loss": loss, "psi": psi, **terms}

    def sample():
        psi = psi_schedule(state.step - 1, recipe["anneal_steps"])  # the psi of the step just taken
        return congealing_grid(generator, transformer_ema, accelerator.unwrap_model(target), fixed_w, psi, real, res)

    run(accelerator, args, state, training_step, steps=args.steps or recipe["steps"], desc="gangealing",
        ema=[(transformer_ema, transformer)], beta=ema_beta(args, accelerator, batch, recipe["ema_half_life_images"]),
        sample=sample, export=lambda: GANgealingPipeline(generator, transformer_ema, accelerator.unwrap_model(target)),
        export_name="pipeline")


if __name__ == "__main__":
    main(parse_args())
