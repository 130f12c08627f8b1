"""GANgealing with K = 2 clusters: the cluster labels of the classifier stage (eq. 6's assignment)
against a slow per-sample, per-head computation, the classifier's initialisation from T's
similarity trunk, its flip classes as the pipeline reads them, a separable toy problem it must
learn, and train/gangealing.py --stage classifier run in-process (micro configs): trains,
resumes, exports a pipeline that congeals images with K = 2."""

import json
import sys
from pathlib import Path

import pytest
import torch
from accelerate.state import AcceleratorState

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gangealing import (GENERATOR_CONFIGS, ClusterClassifier, GANgealingPipeline, StyleGAN2Generator,  # noqa: E402
                        tiny_random_pipeline)
from gangealing.losses import perceptual_distance, perceptual_network  # noqa: E402
from train import gangealing as train_gangealing  # noqa: E402
from train.gangealing_classifier import (classifier_from_transformer, classifier_loss, cluster_labels,  # noqa: E402
                                         flip_augment, heldout_accuracy)

sys.path.insert(0, str(ROOT / "tests"))
from test_gangealing_train import in_process as run_in_process  # noqa: E402

COMMON = ["--config", "micro", "--data", "synthetic:faces", "--batch-size", "2", "--log-every", "1",
          "--perceptual", "vgg"]


def in_process(args, capsys):
    return run_in_process(train_gangealing, args, capsys)


@pytest.fixture(scope="module")
def k2_run(tmp_path_factory):
    """A random micro generator and one transformer step with --num-heads 2: OUTPUT/pipeline, K = 2."""
    root = tmp_path_factory.mktemp("k2")
    torch.manual_seed(0)
    StyleGAN2Generator(**GENERATOR_CONFIGS["micro"]).save_pretrained(root / "generator")
    AcceleratorState._reset_state(True)
    torch.set_num_threads(1)
    train_gangealing.main(train_gangealing.parse_args([*COMMON, "--generator", str(root / "generator"), "--output",
                                                       str(root / "run"),
                                                       "--num-heads", "2", "--steps", "1", "--pca-samples", "256",
                                                       "--sample-every", "100"]))
    AcceleratorState._reset_state(True)
    return root / "run"


@pytest.fixture(scope="module")
def k2_pipe(k2_run):
    pipe = GANgealingPipeline.from_pretrained(k2_run / "pipeline")
    with torch.no_grad():  # one step leaves T near the identity: make the heads differ, as after training
        for p in pipe.transformer.stns[0].warp_head.linear.parameters():
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(3)) * 0.1)
    return pipe


def test_labels_are_the_argmin_over_heads_of_the_per_sample_loss(k2_pipe):
    g, t, c = k2_pipe.generator, k2_pipe.transformer, k2_pipe.target
    perceptual = perceptual_network("vgg")
    w = g.mapping(torch.randn(6, g.style_dim, generator=torch.Generator().manual_seed(1)))
    x, labels = cluster_labels(perceptual, g, t, c, w)
    slow = torch.zeros(6, 2)
    with torch.no_grad():
        for i in range(6):  # one sample, one head at a time
            xi = g.synthesis(w[i : i + 1, None].expand(-1, g.num_latents, -1), randomize_noise=False)
            for k in range(2):
                congealed = t(xi, heads=torch.tensor([k]), output_resolution=32).congealed
                target = g.synthesis(c(w[i : i + 1], psi=0.0, unfold=True)[:, k], randomize_noise=False)
                slow[i, k] = perceptual_distance(perceptual, congealed, target)[0]
    assert x.shape == (6, 3, 32, 32) and labels.dtype == torch.long
    assert (slow[:, 0] - slow[:, 1]).abs().min() > 1e-4  # no ties: the comparison means something
    assert labels.tolist() == slow.argmin(1).tolist()
    assert set(labels.tolist()) == {0, 1}  # both clusters occur in this batch


def test_classifier_starts_from_the_similarity_trunk(k2_pipe):
    t = k2_pipe.transformer
    classifier, copied = classifier_from_transformer(t)
    assert classifier.config.num_clusters == 2 and classifier.to_logits.weight.shape[0] == 4
    trunk = t.stns[0].state_dict()
    own = classifier.state_dict()
    assert copied == sorted(n for n in own if not n.startswith("to_logits"))
    assert all(torch.equal(own[n], trunk[n]) for n in copied)


def test_mirror_labels_are_read_by_the_pipeline_as_mirror_then_head(k2_pipe):
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    images, classes = flip_augment(x, torch.tensor([1, 0, 1]), 2)
    assert torch.equal(images[3:], x.flip(3)) and classes.tolist() == [1, 0, 1, 3, 2, 3]
    classifier, _ = classifier_from_transformer(k2_pipe.transformer)
    with torch.no_grad():  # force class K + 1 = "cluster 1, mirrored"
        classifier.to_logits.weight.zero_()
        classifier.to_logits.bias.copy_(torch.tensor([0.0, 0.0, 0.0, 5.0]))
    pipe = GANgealingPipeline(k2_pipe.generator, k2_pipe.transformer, k2_pipe.target, classifier)
    a = pipe.run(x)
    assert a.cluster.tolist() == [1, 1, 1] and a.flipped.tolist() == [True] * 3
    assert torch.allclose(a.congealed, pipe.transformer(x.flip(3), heads=torch.ones(3, dtype=torch.long)).congealed)


def toy_batch(n, generator):
    """Separable toy problem: a red (class 0) or blue (class 1) square on the left half of noise."""
    x = torch.rand(n, 3, 32, 32, generator=generator) * 0.4 - 0.2
    labels = torch.randint(0, 2, (n,), generator=generator)
    top = torch.randint(4, 20, (n,), generator=generator)
    for i in range(n):
        x[i, :, top[i] : top[i] + 8, 3:11] = -1.0
        x[i, 2 * int(labels[i]), top[i] : top[i] + 8, 3:11] = 1.0
    return x, labels


def test_classifier_learns_a_separable_toy_problem_with_flips():
    """Colour says the cluster, the square's side says the mirror: 4 classes (chance 0.25 on the
    balanced flip-augmented set); the training loss of the stage must learn it."""
    torch.manual_seed(0)
    classifier = ClusterClassifier(flow_size=32, input_size=32, channel_multiplier=0.25, max_channels=32,
                                   num_clusters=2)
    opt = torch.optim.Adam(classifier.parameters(), lr=1e-3)
    data = torch.Generator().manual_seed(0)
    for _ in range(60):
        loss, _ = classifier_loss(classifier, *toy_batch(16, data))
        loss.backward()
        opt.step()
        opt.zero_grad()
    x, labels = toy_batch(64, torch.Generator().manual_seed(99))
    assert heldout_accuracy(classifier, x, labels) > 0.9


def test_classifier_stage_trains_resumes_and_exports_a_k2_pipeline(k2_run, capsys):
    args = [*COMMON, "--stage", "classifier", "--output", str(k2_run), "--heldout-samples", "4", "--save-every", "2",
            "--sample-every", "2"]
    log = in_process([*args, "--steps", "2"], capsys)
    assert ("initialised from the similarity STN trunk" in log
            and "held-out accuracy (8 fakes and mirrors, 4 classes)" in log)
    log = in_process([*args, "--steps", "3", "--resume"], capsys)
    assert "resumed" in log
    rows = [json.loads(line) for line in (k2_run / "classifier-logs.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert [r["step"] for r in steps] == [1, 2, 3] and all(r["cluster_0"] + r["cluster_1"] == 1.0 for r in steps)
    final = [r for r in rows if "heldout_accuracy" in r]
    assert [r["step"] for r in final] == [2, 3] and all(0 <= r["heldout_accuracy"] <= 1 for r in final)
    assert (k2_run / "samples" / "classifier_step_0000002.png").is_file()
    pipe = GANgealingPipeline.from_pretrained(k2_run / "pipeline-classifier")
    assert pipe.classifier.config.num_clusters == 2 and pipe.transformer.config.flip == "classifier"
    from PIL import Image

    images = [Image.new("RGB", (40, 32), (200, 120, 90)), Image.new("RGB", (32, 32), (20, 60, 190))]
    out = pipe.congeal(images)
    x, _ = pipe.preprocess(images)
    clusters, flips = pipe.classifier.assign(x)
    assert [im.size for im in out.images] == [(32, 32)] * 2
    assert out.clusters == clusters.tolist() and out.flipped == flips.tolist()


def test_classifier_stage_refuses_a_one_cluster_pipeline(tmp_path, capsys):
    tiny_random_pipeline().save_pretrained(tmp_path / "pipeline")
    with pytest.raises(SystemExit) as exit_info:
        in_process([*COMMON, "--stage", "classifier", "--output", str(tmp_path)], capsys)
    AcceleratorState._reset_state(True)
    assert exit_info.value.code == 2
    assert "K = 1 cluster: the cluster classifier is for K > 1" in capsys.readouterr().err


def test_transformer_stage_still_needs_a_generator(tmp_path, capsys):
    with pytest.raises(SystemExit):
        train_gangealing.parse_args(["--output", str(tmp_path)])
    assert "--stage transformer needs --generator" in capsys.readouterr().err
