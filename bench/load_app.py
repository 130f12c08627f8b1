"""The app under load: start it on its bundled checkpoints, send mixed calls to every endpoint from
concurrent gradio_client clients (4096 x 4096 photos, 10 s animated GIFs and a share of hostile
inputs among them), then print errors by kind, p50 / p95 latency per endpoint and the server's
peak RSS.

    python bench/load_app.py [--clients 16] [--calls 200] [--hostile 0.2] [--json out.json]

An expected error is a hostile call refused with a gr.Error (the app says what to fix); anything
else that fails (a valid call refused, a hostile call accepted, a dropped connection) is unexpected,
and is listed with its seed, call number, endpoint, valid or hostile, and where it failed (the
innermost client frame: upload, event stream or download); the server's log is then kept.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import synthetic  # noqa: E402


def make_inputs(folder: Path) -> dict:
    """Valid and hostile input files, written once."""
    faces = synthetic.sample("faces", 2, resolution=128, seed=3, pose="medium")
    wide = synthetic.sample("faces", 100, resolution=256, seed=4, pose="wide")
    f = {}
    for name, image in (("reference", faces.image[0]), ("query", faces.image[1])):
        f[name] = folder / f"{name}.png"
        Image.fromarray(image).save(f[name])
    f["labels"] = folder / "labels.png"
    Image.fromarray(faces.labels[0].astype(np.uint8), mode="L").save(f["labels"])
    # the largest photo the app takes (4096 x 4096) and one over the side limit (5000 x 3000)
    big = Image.fromarray(faces.image[1]).resize((4096, 4096), Image.BICUBIC)
    f["photo_4096"] = folder / "photo_4096.jpg"
    big.save(f["photo_4096"], quality=90)
    f["photo_5000"] = folder / "photo_5000.jpg"
    big.resize((5000, 3000)).save(f["photo_5000"], quality=90)
    # a 10 s animated GIF: 100 frames of 100 ms at 256 px (the limits: 10 s, 120 frames, 1024 px)
    f["gif_10s"] = folder / "clip_10s.gif"
    frames = [Image.fromarray(im) for im in wide.image]
    frames[0].save(f["gif_10s"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    f["gif_12s"] = folder / "clip_12s.gif"
    frames[0].save(f["gif_12s"], save_all=True, append_images=frames[1:] + frames[:20], duration=100, loop=0)
    f["edit"] = folder / "edit.png"  # RGBA on the congealed frame (any size: resized to it)
    edit = np.zeros((64, 64, 4), np.uint8)
    edit[20:28, 16:48] = [255, 0, 0, 255]
    Image.fromarray(edit).save(f["edit"])
    f["not_an_image"] = folder / "notes.png"
    f["not_an_image"].write_bytes(b"this is not a picture\n" * 10)
    f["tiny"] = folder / "tiny.png"
    Image.new("RGB", (8, 8)).save(f["tiny"])
    return f


def calls(f: dict):
    """(endpoint, args, hostile) factories; file arguments are wrapped by the caller."""
    from gradio_client import handle_file as h

    valid = [
        ("/generate", lambda: (random.randrange(1000), random.randrange(1000))),
        ("/grid", lambda: (random.randrange(1000), random.randrange(1000), 3, 4, 0.8)),
        ("/propagate_labels", lambda: (h(str(f["reference"])), h(str(f["labels"])), h(str(f["photo_4096"])))),
        ("/congeal", lambda: (h(str(f["photo_4096"])),)),
        ("/propagate_edit", lambda: (h(str(f["edit"])), h(str(f["query"])), [], h(str(f["gif_10s"])))),
        ("/translate", lambda: (h(str(f["labels"])), h(str(f["photo_4096"])))),
        ("/synthetic", lambda: ("cats", random.randrange(100), random.randrange(100), 128, "wide")),
        ("/transfer_appearance", lambda: (h(str(f["reference"])), h(str(f["photo_4096"])), random.randrange(9))),
        ("/match_points",
         lambda: (random.choice(["coordgan", "gangealing", "coat"]), h(str(f["photo_4096"])), h(str(f["query"])),
                                   json.dumps([[random.randrange(4096),
                                                random.randrange(4096)] for _ in range(8)]), None)),
    ]
    hostile = [
        ("/generate", lambda: (1, -5)),
        ("/propagate_labels", lambda: (h(str(f["reference"])), h(str(f["labels"])), h(str(f["photo_5000"])))),
        ("/congeal", lambda: (h(str(f["not_an_image"])),)),
        ("/congeal", lambda: (h(str(f["tiny"])),)),
        ("/propagate_edit", lambda: (h(str(f["edit"])), h(str(f["query"])), [], h(str(f["gif_12s"])))),
        ("/translate", lambda: (h(str(f["not_an_image"])), h(str(f["photo_4096"])))),
        ("/synthetic", lambda: ("dogs", 1, 2, 64, "aligned")),
        ("/transfer_appearance", lambda: (h(str(f["reference"])), h(str(f["not_an_image"])), 3)),
        ("/match_points", lambda: ("coat", h(str(f["reference"])), h(str(f["query"])), "[[1, 2], [3", None)),
        ("/match_points", lambda: ("cocosnet", h(str(f["labels"])), h(str(f["query"])), "[[500, 2]]", None)),
    ]
    return valid, hostile


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_gib(pid: int) -> float:
    """VmHWM of the process: its peak resident set so far."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return float("nan")


def where(error: BaseException) -> str:
    """The innermost gradio_client frame of a failed call ('_download_file', '_upload_file',
    'stream_messages', ...): which request of the call broke."""
    frames = [f for f in traceback.extract_tb(error.__traceback__) if "gradio_client" in f.filename]
    return frames[-1].name if frames else "?"


@contextmanager
def running_app(start_timeout: float = 180, keep_log=lambda: False):
    """The app in a subprocess on its bundled checkpoints (no flags) and a free port, offline;
    yields (url, the server process) once a client connects, and stops it afterwards. The server's
    output goes to the file `server.log_path`, removed at the end unless `keep_log()` says so."""
    from gradio_client import Client

    port = free_port()
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}
    # the server's output goes to a file: a pipe nobody reads fills up (64 KiB of logged tracebacks of refused calls)
    # and the next write blocks the server's event loop, and with it every call
    log = tempfile.NamedTemporaryFile("w+", prefix="app_server_", suffix=".log", delete=False)
    server = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port)], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT, text=True)
    server.log_path = log.name
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.time() + start_timeout
        while True:
            try:
                Client(url, verbose=False)
                break
            except Exception:
                if server.poll() is not None or time.time() > deadline:
                    log.seek(0)
                    raise SystemExit(f"the app did not start: {log.read()[-2000:]}") from None
                time.sleep(1)
        yield url, server
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
        if not keep_log():
            os.unlink(log.name)


def main(argv=None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=16, help="concurrent gradio_client clients")
    p.add_argument("--calls", type=int, default=200, help="calls in all")
    p.add_argument("--hostile", type=float, default=0.2, help="share of hostile calls")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--timeout", type=float, default=240, help="seconds a call may take before it counts as lost")
    p.add_argument("--json", default=None, help="also write the results here")
    args = p.parse_args(argv)
    random.seed(args.seed)
    import httpx
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    work = Path(tempfile.mkdtemp(prefix="load_app_"))
    files = make_inputs(work)
    valid, hostile = calls(files)
    failures = []  # the unexpected outcomes, each named; the server's log is kept when there is one
    with running_app(keep_log=lambda: bool(failures)) as (url, server):
        plan = [(random.random() < args.hostile) for _ in range(args.calls)]
        plan = [(True, *random.choice(hostile)) if bad else (False, *random.choice(valid)) for bad in plan]
        local = threading.local()
        results = []  # (endpoint, hostile, outcome, seconds)

        def one(numbered):
            number, (bad, endpoint, make_args) = numbered
            problem = None
            if not hasattr(local, "client"):
                # a browser waits for an upload; httpx's 5 s default would count a busy server as a failure. No read
                # limit: the client's event stream is silent while its calls wait in the queue, and a read timeout
                # there ends the stream thread and leaves every later call of that client without an answer
                local.client = Client(url, verbose=False,
                                      httpx_kwargs={"timeout": httpx.Timeout(args.timeout, read=None)})
            start = time.perf_counter()
            try:
                local.client.submit(*make_args(), api_name=endpoint).result(timeout=args.timeout)
                outcome = "accepted (unexpected)" if bad else "ok"
            except AppError as error:
                outcome = "refused" if bad else f"refused (unexpected): {str(error)[:80]}"
                problem = None if bad else str(error)
            except FutureTimeout:
                outcome = f"no answer in {args.timeout:g} s (unexpected)"
            except Exception as error:  # a dropped connection, a queue overflow, ...
                outcome = f"{type(error).__name__} (unexpected): {str(error)[:80]}"
                problem = f"{type(error).__name__} in {where(error)}: {error}"
            seconds = time.perf_counter() - start
            results.append((endpoint, bad, outcome, seconds))
            if "unexpected" in outcome:
                failures.append(dict(seed=args.seed, call=number, endpoint=endpoint, hostile=bad,
                                     seconds=round(seconds, 2), error=problem or outcome))

        start = time.time()
        with ThreadPoolExecutor(args.clients) as pool:
            list(pool.map(one, enumerate(plan)))
        wall = time.time() - start
        rss = peak_rss_gib(server.pid)

    kinds = {}
    for _, _, outcome, _ in results:
        kinds[outcome] = kinds.get(outcome, 0) + 1
    unexpected = sum(n for k, n in kinds.items() if "unexpected" in k)
    answered = sum(1 for r in results if not r[1] and r[2] == "ok")
    refused = sum(1 for r in results if r[1] and r[2] == "refused")
    print(f"seed {args.seed}: {len(results)} calls from {args.clients} clients in {wall:.0f} s: {answered} answered, "
          f"{refused} hostile refused, {unexpected} unexpected; server peak RSS {rss:.2f} GiB\n")
    print("| outcome | calls |\n|---|---|")
    for k, n in sorted(kinds.items()):
        print(f"| {k} | {n} |")
    if failures:
        print(f"\nunexpected outcomes (server log kept: {server.log_path}):")
        for f in sorted(failures, key=lambda f: f["call"]):
            print(f"  seed {f['seed']} call #{f['call']} {f['endpoint']} ({'hostile' if f['hostile'] else 'valid'}, "
                  f"{f['seconds']:.1f} s): {f['error'][:300]}")
    print("\n| endpoint | valid calls | p50 s | p95 s | hostile calls |\n|---|---|---|---|---|")
    table = {}
    for endpoint in sorted({r[0] for r in results}):
        times = [r[3] for r in results if r[0] == endpoint and not r[1] and r[2] == "ok"]
        n_bad = sum(1 for r in results if r[0] == endpoint and r[1])
        p50, p95 = (np.percentile(times, 50), np.percentile(times, 95)) if times else (float("nan"),) * 2
        table[endpoint] = dict(valid=len(times), p50=p50, p95=p95, hostile=n_bad)
        print(f"| {endpoint} | {len(times)} | {p50:.2f} | {p95:.2f} | {n_bad} |")
    out = dict(seed=args.seed, calls=len(results), clients=args.clients, answered=answered, refused=refused,
               unexpected=unexpected, wall_s=wall, peak_rss_gib=rss, outcomes=kinds, endpoints=table,
               failures=sorted(failures, key=lambda f: f["call"]))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
