"""Where the authors' CoordGAN models are published, and how their files arrive here.

The first author's Hugging Face *dataset* `JitengMu/CVPR2022_CoordGAN_release` holds the
checkpoints (coordgan_checkpoints/, archive_cvpr_ckpts/) beside the data (data/). The file names
are not documented, so a release is found by a rule, not a table: list the dataset's files, take
the checkpoint files outside data/ whose names mention the release's dataset (`words`, not
`avoid`), download them, and let the converter classify each one by its keys (train.py writes
{g, d, g_ema, ..., d_patch}, train-encoder.py {g, e, g_ema, g_optim}; 512 px from the shapes).
The names in `hints` (the authors' config names) only say which candidates to try first.

Downloads go through huggingface_hub into its cache (progress bars on stderr, `.incomplete` files
renamed when complete, resumed after an interruption); HF_ENDPOINT points them at another server.
Offline (HF_HUB_OFFLINE=1 or no network) a ValueError says the command to run once online.
"""

from __future__ import annotations

import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from huggingface_hub import HfApi, constants, hf_hub_download, is_offline_mode

RELEASE_REPO = "JitengMu/CVPR2022_CoordGAN_release"  # a Hugging Face *dataset* repository
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt")
PAPER = "CoordGAN (Mu et al., CVPR 2022)"
DOWNLOAD_CACHE = None  # None: the Hugging Face cache (HF_HUB_CACHE)


@dataclass(frozen=True)
class Release:
    config: str  # the authors' config (model.CONFIGS) of the generator
    resolution: int
    trained_on: str
    encoder: bool  # the authors released an encoder for it (real images need it)
    words: tuple  # a candidate file's path mentions one of these (lower case) ...
    avoid: tuple = ()  # ... and none of these
    hints: tuple = ()  # the authors' config names: tried first when the dataset has them


RELEASES = {
    "celebA": Release(
        "celebA_128", 128, "CelebAMask-HQ faces", True, ("celeba",), ("512",), ("celebA_128.pt", "celebA_enc.pt")
    ),
    "celebA-512": Release(
        "celebA_512", 512, "CelebAMask-HQ faces", True, ("celeba",), (), ("celebA_512.pt", "celebA_enc.pt")
    ),
    "stanfordcar": Release(
        "stanfordcar_128", 128, "Stanford Cars", True, ("car",), (), ("stanfordcar_128.pt", "stanfordcar_enc.pt")
    ),
    "afhqcat": Release("afhqcat_128", 128, "AFHQ cats", False, ("cat", "afhq"), (), ("afhqcat_128.pt",)),
}


def release_name(source) -> str | None:
    """NAME for "official:NAME" (checked against RELEASES), None for anything else."""
    if not str(source).startswith("official:"):
        return None
    name = str(source).split(":", 1)[1]
    if name not in RELEASES:
        raise ValueError(
            f"unknown CoordGAN release {name!r}; the named releases are {', '.join('official:' + n for n in RELEASES)}"
        )
    return name


def run_once_online(name: str) -> str:
    return f"run once with network access: python -m coordgan.convert_official official:{name}"


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None  # read per call, so a server set after import is used


def repo_files(name: str) -> list[str]:
    """Every file of the release dataset (a ValueError when offline or unreachable)."""
    if is_offline_mode():
        raise ValueError(
            f"official:{name} is not converted here and this machine is offline (HF_HUB_OFFLINE=1); "
            f"{run_once_online(name)}"
        )
    endpoint = urlparse(_endpoint() or constants.ENDPOINT)
    try:  # a quick look first: without a network, huggingface_hub retries for half a minute
        socket.create_connection(
            (endpoint.hostname, endpoint.port or (443 if endpoint.scheme == "https" else 80)), 10
        ).close()
    except OSError as error:
        raise ValueError(
            f"official:{name}: {endpoint.hostname} cannot be reached ({_one_line(error)}); {run_once_online(name)}"
        ) from None
    try:
        return sorted(HfApi(endpoint=_endpoint()).list_repo_files(RELEASE_REPO, repo_type="dataset"))
    except Exception as error:  # HTTP errors, refused connections, DNS: one line and what to do
        raise ValueError(
            f"official:{name}: listing the files of the dataset {RELEASE_REPO} failed ({_one_line(error)}); "
            f"{run_once_online(name)}"
        ) from None


def candidates(name: str, files: list[str]) -> list[str]:
    """The files of `files` that may hold release `name`: checkpoints outside data/ whose path
    mentions the release's dataset, the authors' config names first."""
    release = RELEASES[name]
    found = [
        f
        for f in files
        if f.lower().endswith(CHECKPOINT_SUFFIXES)
        and not f.startswith("data/")
        and any(w in f.lower() for w in release.words)
        and not any(a in Path(f).name.lower() for a in release.avoid)
    ]
    return sorted(found, key=lambda f: (Path(f).name not in release.hints, f))


def download(name: str, filename: str, cache_dir=None) -> Path:
    """One file of the dataset, from the Hugging Face cache or downloaded into it (progress on stderr)."""
    print(f"official:{name}: {filename} from the dataset {RELEASE_REPO}", file=sys.stderr, flush=True)
    try:
        return Path(
            hf_hub_download(
                RELEASE_REPO, filename, repo_type="dataset", cache_dir=cache_dir or DOWNLOAD_CACHE, endpoint=_endpoint()
            )
        )
    except Exception as error:  # a dropped connection, a 404, a full disk
        raise ValueError(
            f"official:{name}: downloading {filename} from the dataset {RELEASE_REPO} failed ({_one_line(error)}); "
            f"{run_once_online(name)}"
        ) from None


def _one_line(error: Exception) -> str:
    text = next((line.strip() for line in str(error).splitlines() if line.strip()), "")
    return f"{type(error).__name__}: {text[:200]}" if text else type(error).__name__


def describe(name: str) -> str:
    r = RELEASES[name]
    return (
        f"CoordGAN `official:{name}`: {r.resolution} px, trained on {r.trained_on}"
        + ("" if r.encoder else ", no encoder")
        + f" ({PAPER})"
    )
