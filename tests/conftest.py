"""Test settings: offline, no telemetry, deterministic."""

import os
from pathlib import Path

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


# ------------------------------------------------------------ app fixtures (tests/test_app*.py, tests/test_browser*.py)
import pytest  # noqa: E402


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def app_server(tmp_path_factory):
    """The app launched in-process once per session on a free port. Tiny random pipelines are
    saved to temporary folders and named with the app's own flags, so the real loading path
    runs. Yields a namespace: url, the folders, and the pipelines as loaded by the app."""
    import importlib
    from types import SimpleNamespace

    import torch

    torch.set_num_threads(1)
    import app

    root = tmp_path_factory.mktemp("pipelines")
    bundled = os.environ.get("APP_SERVER_BUNDLED") == "1"  # the README screenshots: the bundled checkpoints instead
    argv, folders = [], {}
    for name in app.models.SPECS:
        folder = Path(__file__).resolve().parents[1] / "checkpoints" / f"{name}-faces" if bundled else root / name
        package = importlib.import_module(name)
        if not bundled and hasattr(package, "tiny_random_pipeline"):
            package.tiny_random_pipeline(seed=0).save_pretrained(folder)
        if not bundled:  # the bundled checkpoints load as a visitor's app does: no flag, the default folders
            argv += [f"--{name}", str(folder)]
        folders[name] = folder
    port = _free_port()
    # fp32: the tests compare the app's answers with the pipelines' own (auto would pick mixed on a bf16 CPU;
    # tests/test_precision_entry_points.py and test_app_load.py run the app's calls that way)
    demo = app.main([*argv, "--host", "127.0.0.1", "--port", str(port), "--concurrency", "2", "--precision", "fp32"],
                    block=False)
    pipelines = {name: app.models.load(app.models.SPECS[name], str(folder)) for name, folder in folders.items()}
    try:
        yield SimpleNamespace(url=f"http://127.0.0.1:{port}/", folders=folders, pipelines=pipelines, demo=demo)
    finally:
        demo.close()


@pytest.fixture(scope="session")
def face_app_server():
    """The app over tiny random pipelines marked as the bundled models (so their face frame is the
    synthetic faces', demos/face_photos.py), launched in-process on a free port; yields the Blocks.
    With APP_SERVER_BUNDLED=1 (the README screenshots) the bundled checkpoints themselves."""
    import importlib

    import torch

    import app
    from demos import models

    torch.set_num_threads(1)
    pipelines = {}
    for name in ("coordgan", "gangealing", "cocosnet", "coat"):
        if os.environ.get("APP_SERVER_BUNDLED") == "1":
            pipelines[name] = models.set_precision(models.load(models.SPECS[name]), "fp32")
            continue
        pipe = models._ready(importlib.import_module(name).tiny_random_pipeline(seed=0))
        pipelines[name] = models.set_precision(models._mark(pipe, kind="bundled", source="tiny", note=""), "fp32")
    demo = app.build_app(pipelines)
    demo.queue(default_concurrency_limit=2)
    demo.launch(prevent_thread_lock=True, quiet=True, server_name="127.0.0.1", server_port=_free_port(),
                css=app.CSS, max_file_size=app.MAX_FILE_SIZE)
    try:
        yield demo
    finally:
        demo.close()
