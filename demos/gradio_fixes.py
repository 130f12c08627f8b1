"""Workarounds for Gradio 6.31 bugs that the app meets, each with its upstream issue; applied once
by app.build_app before any component is made."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from gradio import processing_utils


def atomic_image_cache() -> None:
    """Output pictures reach gradio's cache under a temporary name and are renamed into place.

    Gradio 6.31's `save_pil_to_cache` (gr.Image, gr.Gallery) writes in place at a path named by
    the hash of the bytes: identical calls write the same file, and a later one truncates it while
    an earlier download is served, which drops that connection (issue #27; bench/README.md, "Under
    load"; upstream gradio-app/gradio#8878). Its `save_file_to_cache` already stages and renames."""
    def save_pil_to_cache(img, cache_dir: str, name: str = "image", format: str = "webp") -> str:
        data = processing_utils.encode_pil_to_bytes(img, format)
        folder = Path(cache_dir) / processing_utils.hash_bytes(data)
        folder.mkdir(exist_ok=True, parents=True)
        path = (folder / f"{name}.{format}").resolve()
        fd, staging = tempfile.mkstemp(dir=folder, prefix=f".{path.name}.")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(staging, path)  # a download that opened the old file reads it whole
        return str(path)

    processing_utils.save_pil_to_cache = save_pil_to_cache
