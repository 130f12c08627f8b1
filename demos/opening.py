"""Results on open: a tab fills its inputs with an example (component values) and, when the page
loads, its outputs with that example's result. The first load computes it; every later visitor
gets the same result at once (memoised per app), so a Space never opens on blank boxes."""

from __future__ import annotations

import threading

from gradio.context import Context

from . import models


def on_open(pipe, fn, inputs, outputs) -> None:
    """Run `fn(*inputs)` into `outputs` when the page loads (once per app; then from memory).
    Without a loaded `pipe`, or outside a gr.Blocks, nothing happens."""
    root = Context.root_block
    if root is None or not pipe:
        return
    memo, lock = {}, threading.Lock()

    @models.inference
    def opened(*args):
        with lock:
            if "result" not in memo:
                memo["result"] = fn(*args)
        return memo["result"]

    root.load(opened, inputs, outputs, api_visibility="private", show_progress="minimal")

