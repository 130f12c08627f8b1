"""Where the authors' GANgealing models are published, and how their files arrive here.

The authors' downloader (utils/download.py of wpeebles/gangealing) fetches
`http://efrosgans.eecs.berkeley.edu/gangealing/pretrained/{name}.pt` (plain http) for the names in
RELEASES; `GANGEALING_RELEASE_URL` (a template with `{name}`) points the download at another server.
Files land in DOWNLOAD_CACHE: written to NAME.pt.part with progress lines on stderr and renamed
when every byte arrived, so a killed or dropped download never leaves a file that looks complete.
Offline (HF_HUB_OFFLINE=1, this project's switch, or no network) a ValueError says the command to
run once online.
"""

from __future__ import annotations

import os
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import torch
from huggingface_hub import is_offline_mode

RELEASE_URL = "http://efrosgans.eecs.berkeley.edu/gangealing/pretrained/{name}.pt"
URL_VARIABLE = "GANGEALING_RELEASE_URL"
DOWNLOAD_CACHE = Path(torch.hub.get_dir()) / "checkpoints" / "gangealing"  # the released .pt files, as downloaded
PAPER = "GANgealing (Peebles et al., CVPR 2022)"


@dataclass(frozen=True)
class Release:
    resolution: int  # the generator's; images are congealed at 256 px (the STN's input)
    trained_on: str


RELEASES = {  # the authors' VALID_MODELS, less simclr_vgg_phase150 (their SSL VGG, not a congealing model)
    "bicycle": Release(256, "LSUN Bicycles"),
    "car": Release(256, "LSUN Cars"),
    "cat": Release(256, "LSUN Cats"),
    "cat_ssl_mix6": Release(256, "LSUN Cats (the authors' cat_ssl_mix6 variant)"),
    "celeba": Release(128, "In-The-Wild CelebA faces"),
    "cub": Release(256, "CUB-200-2011 birds"),
    "dog": Release(256, "LSUN Dogs"),
    "horse": Release(256, "LSUN Horses"),
    "tvmonitor": Release(256, "LSUN TVs"),
}


def release_name(source) -> str | None:
    """NAME for "official:NAME" (checked against RELEASES), None for anything else."""
    if not str(source).startswith("official:"):
        return None
    name = str(source).split(":", 1)[1]
    if name not in RELEASES:
        raise ValueError(
            f"unknown GANgealing release {name!r}; the named releases are "
            f"{', '.join('official:' + n for n in RELEASES)}"
        )
    return name


def release_url(name: str) -> str:
    return os.environ.get(URL_VARIABLE, RELEASE_URL).format(name=name)


def run_once_online(name: str) -> str:
    return f"run once with network access: python -m gangealing.convert_official official:{name}"


def download_release(name: str, cache_dir=None) -> Path:
    """The released .pt of `name`: from the cache, else downloaded into it (not when offline)."""
    path = Path(cache_dir or DOWNLOAD_CACHE) / f"{name}.pt"
    if path.is_file():
        return path
    if is_offline_mode():
        raise ValueError(
            f"official:{name} is not in the cache ({path}) and this machine is offline (HF_HUB_OFFLINE=1); "
            f"{run_once_online(name)}"
        )
    url = release_url(name)
    try:
        download_url(url, path)
    except Exception as error:  # URLError, HTTPError, a dropped connection: the message says what to do
        text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
        raise ValueError(
            f"official:{name}: downloading {url} failed ({type(error).__name__}{': ' + text[:160] if text else ''}); "
            f"{run_once_online(name)}"
        ) from None
    return path


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
    return f"GANgealing `official:{name}`: {r.resolution} px generator, trained on {r.trained_on} ({PAPER})"
