"""Start-up time and memory of the app's models in official mode (what a Space runs): the four
released architectures (CoordGAN celebA + encoder, GANgealing celeba and cat, CoCosNet celebahq)
and the bundled COAT, loaded by demos.models.load_all exactly as app.py does.

    python bench/startup.py [--work DIR] [--threads 2]

The authors' files are built from the fixtures' key lists (../shared/fixtures/*-official/keys_*.json;
without the fixtures, from tests/helpers/authors_files.py) with every value zero, and served by a
real HTTP server on 127.0.0.1 standing in for the Hub, the GANgealing server and Google Drive, so
the first start runs the whole path: list, download, classify, convert, save, load. The second
start finds everything converted. Each start is a fresh process (HF_HOME and TORCH_HOME in --work);
it prints import time, load time per model, the total, and peak / final resident memory.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT.parent / "shared" / "fixtures"
sys.path.insert(0, str(ROOT))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--work", default=None, help="folder for the caches and files (default: a temporary folder, removed)"
    )
    p.add_argument(
        "--threads", type=int, default=2, help="torch threads in each start (default: 2, a free Space's cores)"
    )
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)  # one start, in its own process
    return p.parse_args(argv)


# ------------------------------------------------------------------ one start (a fresh process)
def child() -> None:
    start = time.perf_counter()
    from demos import models

    imported = time.perf_counter() - start
    pipelines = models.load_all(mode="official")
    loaded = time.perf_counter() - start - imported
    rss_now = int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    info = models.describe_all(pipelines)
    print(
        json.dumps(
            dict(
                import_s=imported,
                load_s=loaded,
                peak_mib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                rss_mib=rss_now,
                models={
                    k: dict(kind=v["kind"], seconds=v.get("seconds"), note=v["note"][:120]) for k, v in info.items()
                },
            )
        )
    )


# ------------------------------------------------------------------ the authors' files
def saved(obj) -> bytes:
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def fixture_state(package: str, name: str) -> dict:
    import torch

    entries = json.loads((FIXTURES / f"{package}-official" / name).read_text())
    entries = entries.get("keys") or entries["entries"]
    return {e["key"]: torch.zeros(()).expand(e["shape"]) for e in entries}


def authors_files() -> dict:
    """{what: bytes} of the served files, from the fixtures' key lists when they are there."""
    import argparse as ap

    from tests.helpers import authors_files as built

    if not FIXTURES.is_dir():
        g = built.authors_checkpoint("gangealing")
        return dict(
            coordgan=saved(built.authors_checkpoint("coordgan")),
            coordgan_encoder=saved(built.authors_checkpoint("coordgan-encoder")),
            celeba=saved(g),
            cat=saved(g),
            G=saved(built.authors_checkpoint("cocosnet-G")),
            Corr=saved(built.authors_checkpoint("cocosnet-Corr")),
            source="tests/helpers/authors_files.py",
        )
    from coordgan.encoder import CoordGANOfficialEncoder

    g128 = fixture_state("coordgan", "keys_generator_128.json")
    e = fixture_state("coordgan", "keys_encoder.json")
    e.update(
        {k: v for k, v in CoordGANOfficialEncoder().state_dict().items() if k.endswith("Blur.kernel")}
    )  # constants
    t_ema = fixture_state("gangealing", "keys_t_ema_unimodal_K1.json")
    return dict(
        coordgan=saved({"g": g128, "d": {}, "g_ema": g128, "g_optim": {}, "d_optim": {}, "d_patch": {}}),
        coordgan_encoder=saved({"g": g128, "e": e, "g_ema": g128, "g_optim": {}}),
        celeba=saved(
            {
                "g_ema": fixture_state("gangealing", "keys_g_ema_128_celeba.json"),
                "t_ema": t_ema,
                "ll": fixture_state("gangealing", "keys_ll_K1_ndirs512_celeba.json"),
                "args": ap.Namespace(inject=6),
            }
        ),
        cat=saved(
            {
                "g_ema": fixture_state("gangealing", "keys_g_ema_256.json"),
                "t_ema": t_ema,
                "ll": fixture_state("gangealing", "keys_ll_K1_ndirs1.json"),
                "args": ap.Namespace(inject=5),
            }
        ),
        G=saved(fixture_state("cocosnet", "keys_celebahq_G.json")),
        Corr=saved(fixture_state("cocosnet", "keys_celebahq_Corr.json")),
        source=str(FIXTURES / "*-official" / "keys_*.json"),
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.child:
        child()
        return 0
    import coordgan.releases
    import cocosnet.releases
    from tests.helpers.release_server import ReleaseServer

    files = authors_files()
    server = ReleaseServer()
    repo = coordgan.releases.RELEASE_REPO
    server.add_dataset_file(repo, "coordgan_checkpoints/celebA_128.pt", files["coordgan"])
    server.add_dataset_file(repo, "coordgan_checkpoints/celebA_enc.pt", files["coordgan_encoder"])
    server.files["/gangealing/celeba.pt"], server.files["/gangealing/cat.pt"] = files["celeba"], files["cat"]
    server.add_drive_folder(
        cocosnet.releases.RELEASES["celebahq"].folder_id,
        {"latest_net_G.pth": files["G"], "latest_net_Corr.pth": files["Corr"]},
    )
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="startup-"))
    env = dict(
        os.environ,
        HF_HOME=str(work / "hf"),
        TORCH_HOME=str(work / "torch"),
        HF_HUB_OFFLINE="0",
        HF_ENDPOINT=server.url,
        GANGEALING_RELEASE_URL=server.url + "/gangealing/{name}.pt",
        COCOSNET_DRIVE_URL=server.url + "/drive",
        OMP_NUM_THREADS=str(args.threads),
        MKL_NUM_THREADS=str(args.threads),
        GRADIO_ANALYTICS_ENABLED="False",
        HF_HUB_DISABLE_PROGRESS_BARS="1",
    )
    env.pop("SPACE_ID", None)
    print(f"authors' files from {files['source']}; caches in {work}; {args.threads} threads; {os.cpu_count()} CPUs")
    print("| start | import (s) | load (s) | total (s) | peak RSS (MiB) | RSS after (MiB) | per model (s) |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for which in ("first (download + convert)", "second (cached)"):
        wall = time.perf_counter()
        done = subprocess.run([sys.executable, __file__, "--child"], cwd=ROOT, env=env, capture_output=True, text=True)
        if done.returncode:
            print(done.stderr[-3000:])
            return 1
        r = json.loads(done.stdout.strip().splitlines()[-1])
        per = ", ".join(
            f"{k} {v['seconds']:.1f}" if v["seconds"] is not None else f"{k} ({v['kind']})"
            for k, v in r["models"].items()
        )
        print(
            f"| {which} | {r['import_s']:.1f} | {r['load_s']:.1f} | {time.perf_counter() - wall:.1f} | "
            f"{r['peak_mib']:.0f} | "
            f"{r['rss_mib']:.0f} | {per} |"
        )
        bad = {k: v for k, v in r["models"].items() if v["kind"] != ("bundled" if k == "coat" else "release")}
        if bad:
            print(f"not loaded as releases: {bad}")
    print(f"fetched from the server: {len(server.downloads)} files (every file once)")
    server.close()
    if not args.work:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
