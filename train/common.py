"""What every training script shares: the command-line flags, the step counter saved with the
accelerate state, EMA, atomic state and export writes, scalar logs.

train/coordgan.py, train/coordgan_encoder.py, train/stylegan2.py, train/gangealing.py and
train/cocosnet.py build on these, so a flag means the same thing in each of them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from dataclasses import dataclass

import torch
from accelerate import Accelerator


def add_training_args(p: argparse.ArgumentParser, configs, pose: str = "aligned", save_every: int = 250) -> None:
    """The flags of every training script: --config (one of `configs`), data, output, schedule,
    precision, resume, logging and export. Scripts add their own (learning rates, loss options)."""
    p.add_argument("--config", default="tiny", choices=sorted(configs), help="model size and training recipe")
    p.add_argument("--data", default="synthetic:faces", help="'synthetic:CATEGORY' or 'folder:PATH' (images, optional labels/)")
    p.add_argument("--pose", default=pose, help="pose range of synthetic data: aligned, medium or wide")
    p.add_argument("--output", required=True, help="run folder: state/, samples/, logs.jsonl and the exports")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default: the recipe's)")
    p.add_argument("--batch-size", type=int, default=None, help="per-process batch (default: the recipe's)")
    p.add_argument("--grad-accum", type=int, default=1, help="gradient accumulation steps")
    p.add_argument("--mixed-precision", default="no", choices=["no", "bf16", "fp16"], help="autocast dtype")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--num-workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--resume", action="store_true", help="continue from OUTPUT/state when it exists")
    p.add_argument("--save-every", type=int, default=save_every, help="steps between resumable states and exports")
    p.add_argument("--sample-every", type=int, default=500, help="steps between sample grids")
    p.add_argument("--log-every", type=int, default=25, help="steps between scalar logs")
    p.add_argument("--max-minutes", type=float, default=None, help="stop (and save) after this much wall time")
    p.add_argument("--push-to-hub", default=None, metavar="REPO", help="upload the export to this Hub repo")


def parse_training_args(p: argparse.ArgumentParser, argv=None) -> argparse.Namespace:
    """parse_args plus the check of --data."""
    args = p.parse_args(argv)
    kind, _, value = args.data.partition(":")
    if kind not in ("synthetic", "folder") or not value:
        p.error(f"--data must be 'synthetic:CATEGORY' or 'folder:PATH', got {args.data!r}")
    return args


@dataclass
class TrainState:
    """Counters saved with the accelerate state (register_for_checkpointing)."""

    step: int = 0

    def state_dict(self) -> dict:
        return {"step": self.step}

    def load_state_dict(self, d: dict) -> None:
        self.step = int(d["step"])


def requires_grad(model: torch.nn.Module, flag: bool) -> None:
    for p in model.parameters():
        p.requires_grad_(flag)


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, beta: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach(), 1 - beta)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def save_state_atomically(accelerator: Accelerator, folder: str) -> None:
    """accelerate's save_state into a temporary folder, then renamed over the old one."""
    tmp, old = folder + ".tmp", folder + ".old"
    if accelerator.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(tmp)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if os.path.isdir(folder):
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)


def log_scalars(accelerator: Accelerator, path: str, step: int, scalars: dict) -> None:
    if accelerator.is_main_process:
        with open(path, "a") as f:
            f.write(json.dumps({"step": step, **{k: round(float(v), 5) for k, v in scalars.items()}}) + "\n")
    accelerator.log(scalars, step=step)


def export_folder(accelerator: Accelerator, model, output: str, name: str, push_to_hub: str | None = None) -> None:
    """save_pretrained into OUTPUT/NAME.tmp, then renamed over OUTPUT/NAME; optional Hub upload."""
    if not accelerator.is_main_process:
        return
    tmp, final = os.path.join(output, name + ".tmp"), os.path.join(output, name)
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    if push_to_hub:
        from huggingface_hub import create_repo, upload_folder

        create_repo(push_to_hub, exist_ok=True)
        upload_folder(repo_id=push_to_hub, folder_path=final, commit_message=f"{name} export")


def resumable_state(accelerator: Accelerator, args, *tracked, folder: str = "state") -> tuple[TrainState, str]:
    """The step counter and the extra modules (EMA copies) saved with accelerate's state;
    loads OUTPUT/FOLDER when --resume finds one."""
    state = TrainState()
    accelerator.register_for_checkpointing(*tracked, state)
    state_dir = os.path.join(args.output, folder)
    if args.resume and os.path.isdir(state_dir):
        accelerator.load_state(state_dir)
        accelerator.print(f"resumed from {state_dir} at step {state.step}")
    return state, state_dir


def save_if_due(accelerator: Accelerator, args, step: int, steps: int, start: float, state_dir: str, export, name: str) -> bool:
    """Every --save-every steps, at the last step and when --max-minutes runs out: the resumable
    state and the export `export()` as OUTPUT/NAME (pushed to the Hub at the end). True = stop."""
    out_of_time = args.max_minutes is not None and time.time() - start > 60 * args.max_minutes
    if step % args.save_every == 0 or step == steps or out_of_time:
        save_state_atomically(accelerator, state_dir)
        export_folder(accelerator, export(), args.output, name, args.push_to_hub if step == steps else None)
    if out_of_time:
        accelerator.print(f"stopping at step {step}: --max-minutes {args.max_minutes} reached (resume with --resume)")
    return out_of_time
