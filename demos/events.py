"""How a tab binds its actions: one handler per action, used by its button (or click) and by the
tab's opening example.

`handler` runs a model call: `torch.inference_mode` (and ZeroGPU where it exists, through
`models.inference`), and a ValueError of a library (a check the tab did not make first) becomes a
gr.Error with the library's own message. `on_open` fills a tab's outputs when the page loads: the
first load computes the example, every later visitor gets the same result from memory, so a Space
never opens on blank boxes.
"""

from __future__ import annotations

import functools
import threading

import gradio as gr
from gradio.context import Context

from . import inputs, models


def handler(fn):
    """`fn` under models.inference, its ValueErrors shown as gr.Error; signature kept (Gradio reads
    gr.Progress defaults and gr.SelectData annotations from it, and the API its defaults)."""

    @functools.wraps(fn)
    def checked(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:  # a ValueError too, already worded for the app
            raise
        except ValueError as e:
            raise inputs.library_error(e) from None

    return models.inference(checked)


_state = threading.local()


def opening() -> bool:
    """True while a tab's opening example is computed: notes meant for a visitor's own input (such as
    "no face found" on a synthetic example) stay quiet then."""
    return getattr(_state, "opening", False)


def on_open(pipe, fn, inputs, outputs):
    """Run `fn(*inputs)` into `outputs` when the page loads (once per app; then from memory) and
    return the event, to chain `.then` on; without a loaded `pipe`, or outside a gr.Blocks, None."""
    root = Context.root_block
    if root is None or not pipe:
        return None
    memo, lock = {}, threading.Lock()

    @handler
    def opened(*args):
        with lock:
            if "result" not in memo:
                _state.opening = True
                try:
                    memo["result"] = fn(*args)
                finally:
                    _state.opening = False
        return memo["result"]

    return root.load(opened, inputs, outputs, api_visibility="private", show_progress="minimal")
