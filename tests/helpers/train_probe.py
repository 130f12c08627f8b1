"""Runs a training script under `accelerate launch` and records, per process, what the shared loop
did: the local loss of every update (before gradients are averaged, so it tells which data the
process saw) and a checksum of every prepared network after the last step.

    accelerate launch --multi_gpu --num_processes 2 tests/helpers/train_probe.py REPORT_DIR train/x.py ARGS...

Writes REPORT_DIR/rank{R}.json. Patches train.common before the script imports from it.
"""

import hashlib
import json
import os
import runpy
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import train.common as common  # noqa: E402

LOSSES, REPORT = [], [None]
original_update, original_run = common.update, common.run


def update(accelerator, args, loss_fn, optimizers, models):
    loss = original_update(accelerator, args, loss_fn, optimizers, models)
    LOSSES.append(float(loss))
    return loss


def run(accelerator, args, state, training_step, **kwargs):
    original_run(accelerator, args, state, training_step, **kwargs)
    weights = []
    for model in accelerator._models:
        digest = hashlib.sha1()
        for p in accelerator.unwrap_model(model).parameters():
            digest.update(p.detach().cpu().float().numpy().tobytes())
        weights.append(digest.hexdigest())
    os.makedirs(REPORT[0], exist_ok=True)
    with open(os.path.join(REPORT[0], f"rank{accelerator.process_index}.json"), "w") as f:
        json.dump({"losses": LOSSES, "weights": weights, "processes": accelerator.num_processes, "step": state.step}, f)


def main() -> None:
    REPORT[0], script, *script_args = sys.argv[1:]
    common.update, common.run = update, run
    sys.argv = [script, *script_args]
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()
