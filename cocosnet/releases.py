"""Where the authors' CoCosNet models are published, and how their files arrive here.

The microsoft/CoCosNet README links one Google Drive folder per released model (DRIVE_FOLDERS).
A folder's file list comes from `gdown` (it reads Drive's folder page), then every checkpoint in it
except the discriminator (not needed at inference) is downloaded, whatever it is called: the
converter tells the generator from the correspondence network by their keys. Files land in
DOWNLOAD_CACHE/NAME: written to FILE.part with progress on stderr and renamed when complete, so a
killed or dropped download never leaves a file that looks complete; the folder's list is kept
beside them (files.json), so a later start needs no network for files already there.

`COCOSNET_DRIVE_URL` replaces Google Drive by a plain HTTP server (the tests' local one):
`{url}/folders/{id}` answers the list as JSON [{"id": ..., "path": ...}] and `{url}/files/{id}`
the bytes. With it, the listing, caching and downloading here are exercised; without it, gdown's
own requests to Google are (they cannot be run offline).
"""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import is_offline_mode

DRIVE_VARIABLE = "COCOSNET_DRIVE_URL"
DOWNLOAD_CACHE = Path(torch.hub.get_dir()) / "checkpoints" / "cocosnet"  # NAME/<the folder's files>
CHECKPOINT_SUFFIXES = (".pth", ".pt")
PAPER = "CoCosNet (Zhang et al., CVPR 2020)"


@dataclass(frozen=True)
class Release:
    folder_id: str  # the Google Drive folder of the authors' README
    trained_on: str
    task: str
    resolution: int = 256


RELEASES = {
    "ade20k": Release("1BEBBENbEr9tutZsyGGc3REUuuOYqf6M3", "ADE20K scenes", "segmentation mask to scene"),
    "celebahq": Release("16xgIrGzGBKJWbAUROM71wiA1cf7zrQk5", "CelebA-HQ faces", "face parsing mask to face"),
    "celebahqedge": Release("1SCUrAPsEb6HOx8EtI89ED4wsOR8mrPDF", "CelebA-HQ faces", "edge map to face"),
    "deepfashion": Release("1vyzTdhQqY9ljsAx4u4xPvytX3wR75GYB", "DeepFashion", "pose to person"),
}


def release_name(source) -> str | None:
    """NAME for "official:NAME" (checked against RELEASES), None for anything else."""
    if not str(source).startswith("official:"):
        return None
    name = str(source).split(":", 1)[1]
    if name not in RELEASES:
        raise ValueError(
            f"unknown CoCosNet release {name!r}; the named releases are {', '.join('official:' + n for n in RELEASES)}"
        )
    return name


def run_once_online(name: str) -> str:
    return f"run once with network access: python -m cocosnet.convert_official official:{name}"


def list_folder(folder_id: str) -> list[dict]:
    """[{"id": file id, "path": path in the folder}] of a Drive folder (or of the COCOSNET_DRIVE_URL server)."""
    base = os.environ.get(DRIVE_VARIABLE)
    if base:
        with urllib.request.urlopen(f"{base.rstrip('/')}/folders/{folder_id}", timeout=60) as response:
            return [dict(id=str(f["id"]), path=str(f["path"])) for f in json.load(response)]
    import gdown  # only where Google Drive is used

    files = gdown.download_folder(id=folder_id, skip_download=True, quiet=True)
    if files is None:
        raise OSError(f"gdown could not list the Drive folder {folder_id}")
    return [dict(id=f.id, path=f.path) for f in files]


def fetch(file_id: str, path: Path) -> None:
    """One file of a folder into `path` (PATH.part, renamed when complete)."""
    base = os.environ.get(DRIVE_VARIABLE)
    if base:
        download_url(f"{base.rstrip('/')}/files/{file_id}", path)
        return
    import gdown

    part = path.with_name(path.name + ".part")
    try:
        print(f"downloading Drive file {file_id} to {path}", file=sys.stderr, flush=True)
        if gdown.download(id=file_id, output=str(part), quiet=False) is None:
            raise OSError(f"gdown could not download the Drive file {file_id}")
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise


def wanted(path: str) -> bool:
    """A checkpoint the converter may need: any .pth / .pt but the discriminator (latest_net_D.pth)."""
    name = Path(path).name
    return name.lower().endswith(CHECKPOINT_SUFFIXES) and not Path(name).stem.endswith(("_D", "net_D"))


def download_release(name: str, cache_dir=None) -> list[Path]:
    """The checkpoint files of release `name` in the cache, downloading those not there yet (not
    when offline). A ValueError says what failed and the command to run once online."""
    folder = Path(cache_dir or DOWNLOAD_CACHE) / name
    listing = folder / "files.json"
    try:
        if listing.is_file():
            files = json.loads(listing.read_text())
        elif is_offline_mode():
            raise ValueError(
                f"official:{name} is not in the cache ({folder}) and this machine is offline (HF_HUB_OFFLINE=1); "
                f"{run_once_online(name)}"
            )
        else:
            files = [f for f in list_folder(RELEASES[name].folder_id) if wanted(f["path"])]
            folder.mkdir(parents=True, exist_ok=True)
            listing.write_text(json.dumps(files))
        paths = []
        for f in files:
            path = folder / Path(f["path"]).name
            if not path.is_file():
                if is_offline_mode():
                    raise ValueError(
                        f"official:{name}: {path.name} is not downloaded yet and this machine is offline "
                        f"(HF_HUB_OFFLINE=1); {run_once_online(name)}"
                    )
                fetch(f["id"], path)
            paths.append(path)
    except ValueError:
        raise
    except Exception as error:  # URLError, HTTPError, a dropped connection, gdown's own errors
        text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
        raise ValueError(
            f"official:{name}: downloading the Drive folder {RELEASES[name].folder_id} failed "
            f"({type(error).__name__}{': ' + text[:160] if text else ''}); {run_once_online(name)}"
        ) from None
    return paths


# Copied from gangealing.releases.download_url
def download_url(url: str, path: Path, timeout: float = 60.0) -> Path:
    """Download `url` to `path`: progress on stderr every 10 %, the bytes written to PATH.part and
    renamed when all of them arrived (a short body is an OSError and leaves no file at `path`)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    part = path.with_name(path.name + ".part")
    start, done = time.monotonic(), 0
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "correspondence-demo"})
        with urllib.request.urlopen(request, timeout=timeout) as response, part.open("wb") as out:
            total = int(response.headers.get("Content-Length") or 0)
            print(
                f"downloading {url} ({total / 2**20:.1f} MiB)" if total else f"downloading {url}",
                file=sys.stderr,
                flush=True,
            )
            shown = 0
            while chunk := response.read(1 << 20):
                out.write(chunk)
                done += len(chunk)
                if total and done * 10 // total > shown:
                    shown = done * 10 // total
                    print(
                        f"  {path.name}: {done / 2**20:.1f} of {total / 2**20:.1f} MiB, "
                        f"{time.monotonic() - start:.1f} s",
                        file=sys.stderr,
                        flush=True,
                    )
        if total and done != total:
            raise OSError(f"the connection closed after {done} of {total} bytes")
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return path


def describe(name: str) -> str:
    r = RELEASES[name]
    return f"CoCosNet `official:{name}`: {r.resolution} px, {r.task}, trained on {r.trained_on} ({PAPER})"
