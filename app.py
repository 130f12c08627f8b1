"""The correspondence demo suite: one tab per method, also a Hugging Face Space.

    python app.py [--host 0.0.0.0] [--port 7860]      (or GRADIO_SERVER_PORT / GRADIO_SERVER_NAME)
"""

from __future__ import annotations

import argparse
import os

import gradio as gr

from demos import coming, synthetic_data

TITLE = "Dense correspondence GANs: CoordGAN, GANgealing, CoCosNet"


def build_app() -> gr.Blocks:
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"# {TITLE}")
        for tab in coming.COMING:
            with gr.Tab(tab):
                coming.create_demo(tab)
        with gr.Tab("Synthetic data"):
            synthetic_data.create_demo()
    return app


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), help="interface to listen on (0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", 7860)), help="port (default: $GRADIO_SERVER_PORT or 7860)")
    parser.add_argument("--share", action="store_true", help="also open a public gradio.live link")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    build_app().queue().launch(server_name=args.host, server_port=args.port, share=args.share)


if __name__ == "__main__":
    main()
