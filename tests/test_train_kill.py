"""Crash safety of the shared training loop: a real training process (train/stylegan2.py, micro)
killed with SIGKILL during a state write and during steps, resumed each time. A resume never goes
back more than --save-every steps from the furthest step reached, says which state it resumed
from, keeps at most --checkpoints-total-limit states, and the final export loads. A folder with
only an interrupted write is refused, not silently restarted at step 0."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}
SAVE_EVERY, STEPS = 3, 24
ARGS = ["--config", "micro", "--pose", "wide", "--data", "synthetic:faces", "--batch-size", "2", "--steps", str(STEPS),
        "--save-every", str(SAVE_EVERY), "--log-every", "1", "--sample-every", "1000", "--resume"]


def start(output: Path) -> subprocess.Popen:
    cmd = [sys.executable, str(ROOT / "train" / "stylegan2.py"), *ARGS, "--output", str(output)]
    return subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def logged_steps(output: Path) -> list[int]:
    path = output / "logs.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line)["step"] for line in path.read_text().splitlines() if line.strip()]


def complete_states(output: Path) -> list[int]:
    folder = output / "state"
    return sorted(int(m.group(1)) for n in (os.listdir(folder) if folder.is_dir() else [])
                  if (m := re.fullmatch(r"step-(\d+)", n)))


def kill_when(process: subprocess.Popen, condition, timeout: float = 240) -> bool:
    """SIGKILL as soon as condition() holds (polled every millisecond); False if the run ended first."""
    deadline = time.time() + timeout
    while process.poll() is None and time.time() < deadline:
        if condition():
            process.send_signal(signal.SIGKILL)
            process.wait()
            return True
        time.sleep(0.001)
    process.wait()
    return False


def writing_state(output: Path) -> bool:
    """A state write is under way and an earlier one completed (a kill in the very first write
    leaves nothing to resume from: the refusal test covers that)."""
    folder = output / "state"
    return folder.is_dir() and any(n.endswith(".tmp") for n in os.listdir(folder)) and bool(complete_states(output))


def test_sigkill_during_saves_and_steps_loses_at_most_save_every(tmp_path):
    output = tmp_path / "run"
    furthest = 0
    kills = [lambda: writing_state(output),                                        # in the middle of a state write
             lambda: len(logged_steps(output)) >= furthest + 4,                     # during a step
             lambda: writing_state(output),
             lambda: len(logged_steps(output)) >= furthest + 2]
    killed_in_save = 0
    for condition in kills:
        process = start(output)
        in_save = condition.__code__ is kills[0].__code__
        if not kill_when(process, condition):
            break  # the run finished before the condition held
        killed_in_save += in_save
        furthest = max([furthest, *logged_steps(output)])
        states = complete_states(output)
        assert len(states) <= 2, f"--checkpoints-total-limit 2 kept {states}"
        assert furthest - (states[-1] if states else 0) <= SAVE_EVERY, (f"reached {furthest}, "
                                                                         f"newest complete state {states}")
    assert killed_in_save >= 1, "no kill landed during a state write"
    process = start(output)
    out, _ = process.communicate(timeout=600)
    assert process.returncode == 0, out[-3000:]
    resumed = re.search(r"resumed from (\S+) at step (\d+)", out)
    assert (resumed and furthest - int(resumed.group(2)) <= SAVE_EVERY
            and resumed.group(1).endswith(f"step-{int(resumed.group(2)):07d}"))
    assert complete_states(output)[-1] == STEPS and len(complete_states(output)) == 2
    assert not any(n.endswith(".tmp") for n in os.listdir(output / "state"))
    sys.path.insert(0, str(ROOT))
    from gangealing import StyleGAN2Generator

    generator = StyleGAN2Generator.from_pretrained(output / "generator")
    assert generator.resolution == 32


def test_resume_refuses_a_folder_with_only_an_interrupted_write(tmp_path):
    (tmp_path / "state" / "step-0000003.tmp").mkdir(parents=True)
    cmd = [sys.executable, str(ROOT / "train" / "stylegan2.py"), *ARGS, "--output", str(tmp_path)]
    result = subprocess.run(cmd, cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 2
    assert "only an interrupted write (step-0000003.tmp)" in result.stderr and "Traceback" not in result.stderr
