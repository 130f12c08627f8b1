"""Stage 2 of GANgealing with K > 1 clusters (section 3.2): the cluster classifier for real images.

    python train/gangealing.py --stage classifier --config tiny --output runs/gangealing-faces-k2
    (reads OUTPUT/pipeline, the stage-1 export of `--num-heads 2`; writes OUTPUT/pipeline-classifier)

The cluster of a fake image G(w) is known (eq. 6): k* = argmin_k l(T_k(G(w)), G(mix(c_k, w))).
A real image has no w, so a classifier learns to predict k* from the image alone, trained with a
cross-entropy loss on pairs (G(w), k*) from the frozen generator, transformer and target; it is
initialised with the weights of T (the similarity STN's trunk) and a random classification head.

Flips: ClusterClassifier has 2K classes, k = "congeal with head k" and K + k = "mirror the image,
then congeal with head k". Each fake image is used twice: G(w) with label k*, and its mirror with
label K + k* (mirroring it back gives G(w), whose best head is k*). The paper's flip details are in
its supplement B.4, which is not in our copy of the text; this labelling is the one consistent
with the classifier's class layout, and it needs no target for mirrored images.

Our choices (not given in the paper's text): Adam lr 1e-3, betas (0.9, 0.999) like the STN; no EMA
(the authors' release has a single `classifier` entry, no EMA copy); the step counts below.
"""

from __future__ import annotations

import os

import numpy as np
import torch
import torch.nn.functional as F

from gangealing import ClusterClassifier, GANgealingPipeline
from gangealing.losses import congealing_loss, perceptual_network
from train.common import fail, log_scalars, resume, run, setup, update
from train.data import tensor_to_image

CLASSIFIER_STEPS = {"paper": 100_000, "paper-128": 100_000, "tiny": 2_000, "micro": 500}  # our defaults
CLASSIFIER_LR = 1e-3


def fake_images(generator, w: torch.Tensor) -> torch.Tensor:
    """G(w): w (B, D) fed to every W+ layer -> (B, 3, R, R)."""
    return generator.synthesis(w[:, None].expand(-1, generator.num_latents, -1), randomize_noise=False)


@torch.no_grad()
def cluster_labels(perceptual, generator, transformer, target, w: torch.Tensor,
                   psi: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """G(w) (B, 3, R, R) and its cluster k* (B,) = argmin_k l(T_k(G(w)), G(mix(c_k, w))), the
    assignment step of eq. 6, computed by congealing_loss exactly as in transformer training
    (psi = 0: the final targets c_k)."""
    k = transformer.config.num_heads
    x = fake_images(generator, w)
    y = generator.synthesis(target(w, psi), randomize_noise=False)  # (B*K, 3, R, R) n-major
    heads = torch.arange(k, device=w.device).repeat(len(w))
    out = transformer(x.repeat_interleave(k, 0), heads=heads, output_resolution=x.shape[-1])
    _, _, assignment = congealing_loss(perceptual, out.congealed, y, out.residual_flow, k, 0.0, 0.0)
    return x, assignment


def flip_augment(x: torch.Tensor, labels: torch.Tensor, num_clusters: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every image and its mirror: (2B, 3, R, R) and labels (2B,), the mirror labelled K + k*."""
    return torch.cat([x, x.flip(3)]), torch.cat([labels, labels + num_clusters])


def classifier_loss(classifier, x: torch.Tensor, labels: torch.Tensor,
                    num_clusters: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy on (image, class) pairs, flip-augmented; also the batch accuracy. Pass
    `num_clusters` when `classifier` is wrapped (DDP has no .config)."""
    images, classes = flip_augment(x, labels, num_clusters or classifier.config.num_clusters)
    logits = classifier(images).float()  # (2B, 2K)
    return F.cross_entropy(logits, classes), (logits.argmax(1) == classes).float().mean()


def classifier_from_transformer(transformer) -> tuple[ClusterClassifier, list]:
    """A ClusterClassifier shaped like T's similarity STN, its trunk (input downsample, residual
    convs, final conv) copied from T; the classification head `to_logits` stays random (it
    replaces the similarity STN's final_linear + warp head). Returns it and the copied keys."""
    c = transformer.config
    classifier = ClusterClassifier(flow_size=c.flow_size, input_size=c.input_size,
                                   channel_multiplier=c.channel_multiplier,
                                   max_channels=c.max_channels, num_clusters=c.num_heads)
    own = classifier.state_dict()
    trunk = {n: v for n, v in transformer.stns[0].state_dict().items() if n in own and own[n].shape == v.shape}
    classifier.load_state_dict(trunk, strict=False)
    return classifier.to(transformer.device), sorted(trunk)


@torch.no_grad()
def heldout_accuracy(classifier, x: torch.Tensor, labels: torch.Tensor, batch: int = 64) -> float:
    """2K-class accuracy on held-out fakes and their mirrors."""
    images, classes = flip_augment(x, labels, classifier.config.num_clusters)
    hits = sum((classifier(images[i : i + batch]).argmax(1) == classes[i : i + batch]).sum().item()
               for i in range(0, len(images), batch))
    return hits / len(images)


def assignment_grid(pipe: GANgealingPipeline, x: torch.Tensor, labels: torch.Tensor) -> np.ndarray:
    """Rows: held-out G(w) (and mirrors), congealed with the classifier's (cluster, flip), congealed
    with the true k* (flip-corrected)."""
    k = pipe.transformer.config.num_heads
    images, classes = flip_augment(x, labels, k)
    predicted = pipe.run(images).congealed
    mirror = (classes >= k).view(-1, 1, 1, 1)
    best = pipe.transformer(torch.where(mirror, images.flip(3), images), heads=classes % k,
                            output_resolution=images.shape[-1]).congealed
    rows = [tensor_to_image(t) for t in (images, predicted, best)]
    return np.concatenate([np.concatenate(list(row), 1) for row in rows], 0)


def main(args, batch_size: int) -> None:
    """args: train/gangealing.py's flags with --stage classifier; batch_size: the recipe's."""
    accelerator = setup(args, "gangealing-classifier")
    device = accelerator.device

    source = args.pipeline or os.path.join(args.output, "pipeline")
    pipe = GANgealingPipeline.from_pretrained(source)
    generator, transformer, target = (m.eval().requires_grad_(False).to(device)
                                      for m in (pipe.generator, pipe.transformer, pipe.target))
    k = transformer.config.num_heads
    if k < 2:
        fail(f"{source} has K = 1 cluster: the cluster classifier is for K > 1 "
                         "(train the transformer with --num-heads K first)")
    transformer.register_to_config(flip="classifier")  # K > 1: the classifier decides the mirror
    perceptual = perceptual_network(args.perceptual).to(device)
    classifier, copied = classifier_from_transformer(transformer)
    accelerator.print(f"classifier: {len(copied)} tensors initialised from the similarity STN trunk, to_logits random")
    opt = torch.optim.Adam(classifier.parameters(), lr=args.lr or CLASSIFIER_LR, betas=(0.9, 0.999))
    classifier, opt = accelerator.prepare(classifier, opt)
    state = resume(accelerator, args, folder="classifier-state")

    batch = args.batch_size or batch_size
    heldout_gen = torch.Generator().manual_seed(args.seed + 4321)  # fixed, never trained on
    heldout = [cluster_labels(perceptual, generator, transformer, target, generator.mapping(z.to(device)))
               for z in torch.randn(args.heldout_samples, generator.style_dim, generator=heldout_gen).split(64)]
    heldout_x, heldout_labels = torch.cat([h[0] for h in heldout]), torch.cat([h[1] for h in heldout])

    def export():
        return GANgealingPipeline(generator, transformer, target, accelerator.unwrap_model(classifier))


    def report():
        accuracy = heldout_accuracy(accelerator.unwrap_model(classifier).eval(), heldout_x, heldout_labels)
        majority = torch.bincount(torch.cat([heldout_labels, heldout_labels + k]),
                                  minlength=2 * k).max().item() / (2 * len(heldout_labels))
        log_scalars(accelerator, os.path.join(args.output, "classifier-logs.jsonl"), state.step,
                    {"heldout_accuracy": accuracy, "heldout_majority": majority})
        accelerator.print(f"held-out accuracy ({2 * len(heldout_labels)} fakes and mirrors, {2 * k} classes): "
                          f"{accuracy:.3f} "
                          f"(majority class {majority:.3f})")

    def training_step(step: int) -> dict:
        scalars = {}

        def loss_fn(micro):
            w = generator.mapping(torch.randn(batch, generator.style_dim, device=device))
            x, labels = cluster_labels(perceptual, generator, transformer, target, w)  # frozen G, T, c
            loss, scalars["accuracy"] = classifier_loss(classifier, x, labels, k)
            shares = torch.bincount(labels, minlength=k).float() / len(labels)
            scalars.update({f"cluster_{i}": s for i, s in enumerate(shares)})
            return loss

        loss = update(accelerator, args, loss_fn, [opt], [classifier])
        return {"loss": loss, **scalars}

    run(accelerator, args, state, training_step, steps=args.steps or CLASSIFIER_STEPS[args.config], desc="classifier",
        sample=lambda: assignment_grid(export(), heldout_x[:8], heldout_labels[:8]), sample_prefix="classifier_step_",
        log_file="classifier-logs.jsonl", export=export, export_name="pipeline-classifier", after=report)
