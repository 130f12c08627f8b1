"""The app under load keeps every connection (issue #27): identical /translate calls with a 4096 px
exemplar, while other endpoints run and the first answer's picture is being downloaded, all finish
and every download arrives whole.

Gradio names an output picture's cache file after the hash of its bytes, so identical calls write
the same file. Written in place, a later call truncates it while an earlier download is being
served: the server sends fewer bytes than its Content-Length and drops the connection (the client's
`httpx.RemoteProtocolError: peer closed connection without sending complete message body`). The
app writes those files under a temporary name and renames them into place (`demos.gradio_fixes.atomic_image_cache`).

The app runs in a subprocess on its bundled checkpoints, as `bench/load_app.py` starts it.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
CLIENTS, CALLS = 3, 2  # identical /translate calls: 3 clients of 2 calls, 2 at a time (the app's --concurrency)


def load_bench():
    spec = importlib.util.spec_from_file_location("load_app", ROOT / "bench" / "load_app.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A 1024 px label map (its outputs are 1024 px PNGs: a write long enough to be caught) and a
    4096 x 4096 exemplar JPEG."""
    import synthetic

    folder = tmp_path_factory.mktemp("load")
    faces = synthetic.sample("faces", 2, resolution=128, seed=3, pose="medium")
    labels = Image.fromarray(faces.labels[0].astype(np.uint8), mode="L").resize((1024, 1024), Image.NEAREST)
    labels.save(folder / "labels.png")
    Image.fromarray(faces.image[1]).resize((4096, 4096), Image.BICUBIC).save(folder / "photo_4096.jpg", quality=90)
    Image.fromarray(faces.image[0]).save(folder / "reference.png")
    return {name: str(folder / name) for name in ("labels.png", "photo_4096.jpg", "reference.png")}


def test_identical_translate_calls_under_load_drop_no_connection(inputs):
    import httpx
    from gradio_client import Client, handle_file

    def translate_args():
        return handle_file(inputs["labels.png"]), handle_file(inputs["photo_4096.jpg"])

    errors, downloads = [], []
    done = threading.Event()
    with load_bench().running_app() as (url, _):
        # the first answer's picture: its URL is the one every identical call writes again
        first = Client(url, verbose=False, download_files=False).predict(*translate_args(), api_name="/translate")
        picture = first[0]["url"]

        def fetch():
            """A viewer of the first answer downloading it over and over (a browser's reload)."""
            with httpx.Client(timeout=60) as http:
                while not done.is_set():
                    try:
                        r = http.get(picture)
                        if r.status_code != 200 or str(len(r.content)) != r.headers.get("content-length"):
                            errors.append(f"download of the result: status {r.status_code}, {len(r.content)} bytes")
                        downloads.append(len(r.content))
                    except Exception as e:  # httpx.RemoteProtocolError: the server dropped the connection
                        errors.append(f"download of the result: {type(e).__name__}: {e}")

        def call(endpoint, make_args, n):
            client = Client(url, verbose=False, httpx_kwargs={"timeout": httpx.Timeout(120, read=None)})
            for _ in range(n):
                try:
                    client.predict(*make_args(), api_name=endpoint)
                except Exception as e:  # a dropped connection of its upload, event stream or downloads
                    errors.append(f"{endpoint}: {type(e).__name__}: {e}")

        fetchers = [threading.Thread(target=fetch) for _ in range(4)]
        for t in fetchers:
            t.start()
        try:
            with ThreadPoolExecutor(CLIENTS + 2) as pool:
                jobs = [pool.submit(call, "/translate", translate_args, CALLS) for _ in range(CLIENTS)]
                jobs.append(pool.submit(call, "/congeal", lambda: (handle_file(inputs["photo_4096.jpg"]),), 2))
                jobs.append(pool.submit(call, "/transfer_appearance", lambda: (
                    handle_file(inputs["reference.png"]), handle_file(inputs["photo_4096.jpg"]), 3), 1))
                for job in jobs:
                    job.result()
        finally:
            done.set()
            for t in fetchers:
                t.join()
    assert not errors, f"{len(errors)} failures under load, e.g. {errors[:3]}"
    assert len(downloads) > CLIENTS * CALLS, "the result was not downloaded while the identical calls finished"
    assert len(set(downloads)) == 1, f"downloads of one result differ in size: {sorted(set(downloads))}"


def test_output_pictures_are_replaced_not_rewritten(tmp_path):
    """The mechanism, without a server: saving the same picture again gives the path a new file
    (a rename), so a download that opened the first copy keeps reading it whole."""
    from gradio import processing_utils

    from demos import gradio_fixes

    gradio_fixes.atomic_image_cache()
    picture = Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), np.uint8))
    path = processing_utils.save_pil_to_cache(picture, str(tmp_path), format="png")
    with open(path, "rb") as reader:
        first = os.fstat(reader.fileno()).st_ino
        assert processing_utils.save_pil_to_cache(picture, str(tmp_path), format="png") == path
        assert os.stat(path).st_ino != first, "the cached picture was rewritten in place"
        assert len(reader.read()) == os.path.getsize(path)
    assert [p.name for p in Path(path).parent.iterdir()] == ["image.png"], "a staging file was left behind"
