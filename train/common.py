"""The one training loop that every script in train/ uses, and the flags it reads.

A script reads top to bottom, like rosinality's or nanoGPT's train.py:

    args = parse_args()                                    # add_training_args + the script's own flags
    accelerator = setup(args, "stylegan2")                 # Accelerator, seed, folders, tensorboard
    ... networks, optimizers, accelerator.prepare(...)
    state = resume(accelerator, args, generator_ema)       # step counter (+ EMA copies) of the newest state
    loader = data_loader(args, accelerator, resolution, batch, state.step)

    def training_step(step):                               # the script's own objective
        update(accelerator, args, d_loss, [opt_d], [discriminator])   # backward + optimizer step
        update(accelerator, args, g_loss, [opt_g], [generator])
        return {...scalars...}

    run(accelerator, args, state, training_step, steps=..., ema=[(generator_ema, generator)], ...)

What the loop owns, so that it means the same in every script:
- `--steps` counts optimizer steps; one step = `--grad-accum` micro-batches per update (`update`),
  the only place a backward pass is taken. DDP synchronises gradients on the last micro-batch only.
- EMA: one rule, beta = 0.5 ** (images per step / half-life in images), images per step =
  batch x grad-accum x processes (`ema_beta`).
- Resumable states: OUTPUT/<folder>/step-NNNNNNN, written into a `.tmp` folder and renamed when
  complete (one atomic rename: a kill -9 at any moment leaves the previous states intact). The
  newest `--checkpoints-total-limit` are kept; `--resume` loads the newest complete one, says which,
  and refuses (rather than restart at step 0) when it finds only an interrupted write.
- Every `--save-every` steps, at the last step and when `--max-minutes` runs out: the state and the
  export (`save_pretrained` into OUTPUT/<name>, atomically); `--push-to-hub` uploads the export
  once, at the end.
- Logs: OUTPUT/<log file> (jsonl, appended) and tensorboard when it is installed; a tqdm bar on
  the main process; sample grids (PNG) every `--sample-every` steps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from PIL import Image
from tqdm.auto import tqdm

from faces.frames import FRAMES
from train.data import infinite_loader, make_dataset, parse_data_spec

# ---------------------------------------------------------------------------------------------- flags


def add_training_args(p: argparse.ArgumentParser, configs, pose: str = "aligned", save_every: int = 250) -> None:
    """The flags of every training script: --config (one of `configs`), data, output, schedule,
    precision, resume, logging and export. Scripts add their own (learning rates, loss options)."""
    p.add_argument("--config", default="tiny", choices=sorted(configs), help="model size and training recipe")
    p.add_argument("--data", default="synthetic:faces",
                   help="'synthetic:CATEGORY' or 'folder:PATH' (images, optional labels/ and keypoints.json)")
    p.add_argument("--pose", default=pose, help="pose range of synthetic data: aligned, medium or wide")
    p.add_argument("--output", required=True, help="run folder: state/, samples/, logs.jsonl and the exports")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the recipe's)")
    p.add_argument("--batch-size", type=int, default=None, help="per-process micro-batch (default: the recipe's)")
    p.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    p.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"], help="autocast dtype")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete state in OUTPUT")
    p.add_argument("--save-every", type=int, default=save_every, help="steps between resumable states and exports")
    p.add_argument("--checkpoints-total-limit", type=int, default=2, help="resumable states kept (the newest ones)")
    p.add_argument("--sample-every", type=int, default=500, help="steps between sample grids")
    p.add_argument("--log-every", type=int, default=25, help="steps between scalar logs")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this much wall time")
    p.add_argument("--push-to-hub", default=None, metavar="REPO", help="upload the final export to this Hub repo")
    p.add_argument("--face-frame", default="auto", choices=("auto", "none", *FRAMES),
                   help="the crop the training faces are aligned to, saved with the export so that the app aligns "
                        "a visitor's face photo the same way (faces/README.md; e.g. ffhq for photos aligned with "
                        "`python -m faces align --frame ffhq`); auto: synthetic for synthetic:faces, else none")


def parse_training_args(p: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """parse_args plus the checks that need more than one flag (a usage error exits 2)."""
    args = p.parse_args(argv)
    try:
        parse_data_spec(args.data)
    except ValueError as error:
        p.error(str(error))
    if args.face_frame == "auto":
        args.face_frame = "synthetic" if args.data == "synthetic:faces" else "none"
    for flag in ("grad_accum", "save_every", "checkpoints_total_limit", "sample_every", "log_every"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} must be at least 1, got {getattr(args, flag)}")
    return args


def fail(message: str) -> None:
    """A problem the user can fix (a missing stage, a partial state): one line on stderr, exit code 2."""
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


# ---------------------------------------------------------------------------------------------- setup


def setup(args, name: str) -> Accelerator:
    """The Accelerator (gradient accumulation is `update`'s, not accelerate's), a seed per process,
    OUTPUT/samples, and tensorboard under OUTPUT/logs when it is installed."""
    log_with = "tensorboard" if _has_tensorboard() else None
    accelerator = Accelerator(mixed_precision=args.mixed_precision, log_with=log_with, project_dir=args.output)
    set_seed(args.seed + accelerator.process_index)
    os.makedirs(os.path.join(args.output, "samples"), exist_ok=True)
    if log_with:
        accelerator.init_trackers(name)
    return accelerator


def data_loader(args, accelerator: Accelerator, resolution: int, batch_size: int, step: int, seed_offset: int = 0):
    """Endless batches of `--data` for this process: each process (and DataLoader worker) draws
    its own images, and a resumed run draws new ones (the seed moves with the step)."""
    seed = args.seed + seed_offset + step
    dataset = make_dataset(args.data, resolution, seed=seed, pose=args.pose,
                           rank=accelerator.process_index, world_size=accelerator.num_processes)
    return infinite_loader(dataset, batch_size, num_workers=args.num_workers,
                           seed=seed + 7919 * accelerator.process_index)


def ema_beta(args, accelerator: Accelerator, batch_size: int, half_life_images: float) -> float:
    """EMA decay per optimizer step: the average forgets half its weight every `half_life_images`."""
    return 0.5 ** (batch_size * args.grad_accum * accelerator.num_processes / half_life_images)


def requires_grad(model: torch.nn.Module, flag: bool) -> None:
    for p in model.parameters():
        p.requires_grad_(flag)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - beta)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


# ---------------------------------------------------------------------------------------------- one update


def update(accelerator: Accelerator, args, loss_fn, optimizers: list, models: list):
    """One optimizer step of `models`: `loss_fn(micro)` for each of the --grad-accum micro-batches
    (it draws its own data), gradients averaged over them, then every optimizer steps. Returns
    the last micro-batch's loss, detached (a number to log, not a graph to keep). The only backward
    pass of the training scripts."""
    n = args.grad_accum
    for micro in range(n):
        with contextlib.ExitStack() as stack:
            if micro < n - 1:  # DDP: all-reduce the gradients once, on the last micro-batch
                for model in models:
                    stack.enter_context(accelerator.no_sync(model))
            loss = loss_fn(micro)
            accelerator.backward(loss / n if n > 1 else loss)
    for optimizer in optimizers:
        optimizer.step()
    for optimizer in optimizers:
        optimizer.zero_grad(set_to_none=True)
    return loss.detach()


# ---------------------------------------------------------------------------------------------- resumable state


@dataclass
class TrainState:
    """Counters saved with the accelerate state (register_for_checkpointing)."""

    step: int = 0
    folder: str = ""  # OUTPUT/<folder> holding the step-N states (not saved)

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, d: dict) -> None:
        self.step = int(d["step"])


_STATE = re.compile(r"^step-(\d+)$")


def complete_states(folder: str) -> list[str]:
    """OUTPUT/<folder>/step-N folders (complete writes only), oldest first."""
    if not os.path.isdir(folder):
        return []
    found = [(int(m.group(1)), name) for name in os.listdir(folder) if (m := _STATE.match(name))]
    return [os.path.join(folder, name) for _, name in sorted(found)]


def resume(accelerator: Accelerator, args, *tracked, folder: str = "state") -> TrainState:
    """The step counter, registered with `tracked` (EMA copies) for accelerate's save_state; with
    --resume, loaded from the newest complete state in OUTPUT/<folder>. Sets `state.folder`."""
    state = TrainState()
    accelerator.register_for_checkpointing(*tracked, state)
    state.folder = os.path.join(args.output, folder)
    if not args.resume:
        return state
    candidates = complete_states(state.folder)
    source = candidates[-1] if candidates else None
    if source is None:
        partial = [n for n in os.listdir(state.folder) if n.endswith(".tmp")] if os.path.isdir(state.folder) else []
        if partial:
            fail(f"{state.folder} holds only an interrupted write ({', '.join(sorted(partial))}), no complete state: "
                 "remove it to start again at step 0, or drop --resume")
        accelerator.print(f"--resume: no saved state in {state.folder}, starting at step 0")
        return state
    accelerator.load_state(source)
    accelerator.print(f"resumed from {source} at step {state.step}")
    return state


def save_state(accelerator: Accelerator, state: TrainState, limit: int) -> str:
    """accelerate's save_state into OUTPUT/<folder>/step-N.tmp, renamed to step-N once every
    process has written; then only the newest `limit` complete states are kept."""
    final = os.path.join(state.folder, f"step-{state.step:07d}")
    tmp = final + ".tmp"
    if accelerator.is_main_process:
        os.makedirs(state.folder, exist_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        shutil.rmtree(final, ignore_errors=True)  # a re-save of the same step (resumed, then stopped at once)
        os.replace(tmp, final)
        for old in complete_states(state.folder)[:-limit]:
            shutil.rmtree(old, ignore_errors=True)
        for name in os.listdir(state.folder):  # writes interrupted by an earlier kill
            if name.endswith(".tmp"):
                shutil.rmtree(os.path.join(state.folder, name), ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def with_face_frame(pipe, args):
    """The export with `--face-frame` in its config (model_index.json), for a pipeline that takes one."""
    frame = getattr(args, "face_frame", "none")
    if frame not in (None, "none", "auto") and "face_frame" in getattr(pipe, "config", {}):
        pipe.register_to_config(face_frame=frame)
    return pipe


def export_folder(accelerator: Accelerator, model, output: str, name: str, push_to_hub: str | None = None) -> None:
    """save_pretrained into OUTPUT/NAME.tmp, then swapped in for OUTPUT/NAME; optional Hub upload."""
    if not accelerator.is_main_process:
        return
    tmp, final, old = (os.path.join(output, name + suffix) for suffix in (".tmp", "", ".old"))
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    shutil.rmtree(old, ignore_errors=True)
    if os.path.isdir(final):
        os.replace(final, old)
    os.replace(tmp, final)
    shutil.rmtree(old, ignore_errors=True)
    if push_to_hub:
        from huggingface_hub import create_repo, upload_folder

        create_repo(push_to_hub, exist_ok=True)
        upload_folder(repo_id=push_to_hub, folder_path=final, commit_message=f"{name} export")


# ---------------------------------------------------------------------------------------------- the loop


def scalar_values(scalars: dict) -> dict:
    """{name: float}: tensors detached first (a loss term still holds its graph; converting it
    directly makes torch warn about requires_grad on every log)."""
    return {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in scalars.items()}


def log_scalars(accelerator: Accelerator, path: str, step: int, scalars: dict) -> None:
    scalars = scalar_values(scalars)
    if accelerator.is_main_process:
        with open(path, "a") as f:
            f.write(json.dumps({"step": step, **{k: round(v, 5) for k, v in scalars.items()}}) + "\n")
    accelerator.log(scalars, step=step)


def run(accelerator: Accelerator, args, state: TrainState, training_step, *, steps: int, export, export_name: str,
        ema=(), beta: float = 0.0, sample=None, sample_prefix: str = "step_", log_file: str = "logs.jsonl",
        desc: str = "train", after=None) -> None:
    """Steps state.step .. steps: `training_step(step)` (returns a dict of scalars), the EMA
    updates `ema` [(average, model)], then logs, sample grids `sample()` (an HxWx3 uint8 array),
    states and exports `export()` on the schedule of the module docstring; then `after()` (a final
    evaluation, say) before the trackers close."""
    log_path = os.path.join(args.output, log_file)
    start = time.time()
    bar = tqdm(range(state.step, steps), initial=state.step, total=steps,
               disable=not accelerator.is_main_process, desc=desc)
    for _ in bar:
        scalars = training_step(state.step)
        for average, model in ema:
            ema_update(average, accelerator.unwrap_model(model), beta)
        state.step += 1
        step = state.step
        if step % args.log_every == 0 or step == steps:
            scalars = scalar_values(scalars)
            if not all(math.isfinite(v) for v in scalars.values()):
                accelerator.print(f"warning: non-finite loss at step {step}: {scalars}")
            log_scalars(accelerator, log_path, step, scalars)
            bar.set_postfix({k: f"{v:.3g}" for k, v in list(scalars.items())[:3]})
        if sample is not None and accelerator.is_main_process and (step % args.sample_every == 0 or step == steps):
            with torch.no_grad():
                grid = sample()
            path = os.path.join(args.output, "samples", f"{sample_prefix}{step:07d}.png")
            Image.fromarray(np.asarray(grid)).save(path)
        out_of_time = args.max_minutes is not None and time.time() - start > 60 * args.max_minutes
        if step % args.save_every == 0 or step == steps or out_of_time:
            save_state(accelerator, state, args.checkpoints_total_limit)
            if accelerator.is_main_process:
                export_folder(accelerator, with_face_frame(export(), args), args.output, export_name,
                              args.push_to_hub if step == steps else None)
        if out_of_time:
            accelerator.print(f"stopping at step {step}: --max-minutes {args.max_minutes} reached (continue "
                              "with --resume)")
            break
    if after is not None:
        after()
    accelerator.wait_for_everyone()
    accelerator.end_training()


def _has_tensorboard() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True
