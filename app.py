"""The correspondence demo suite: one tab per method, also a Hugging Face Space.

    python app.py [--host 0.0.0.0] [--port 7860]      (or GRADIO_SERVER_PORT / GRADIO_SERVER_NAME)
                  [--coordgan DIR_OR_REPO] [--gangealing DIR_OR_REPO] [--cocosnet DIR_OR_REPO] [--coat DIR_OR_REPO]
                  (or COORDGAN_MODEL / GANGEALING_MODEL / COCOSNET_MODEL / COAT_MODEL; default checkpoints/*-faces)
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
# Two requests at once (--concurrency 2) on a 2-core Space: OpenMP threads that spin at barriers
# while the other request holds a core made calls 5x slower; passive waiting costs 10-25 % alone
# (bench/README.md, "Threads on a shared machine"). Read once, before torch starts; set it to override.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import gradio as gr  # noqa: E402

from demos import (  # noqa: E402
    appearance_transfer,
    compare,
    congealing,
    exemplar_translation,
    face_api,
    gradio_fixes,
    label_propagation,
    match_api,
    models,
    models_api,
    structure_texture,
    synthetic_data,
)

TITLE = "Dense correspondence: CoordGAN, GANgealing, CoCosNet, COAT"
CSS = ".pixelated img { image-rendering: pixelated; width: 100%; height: 100%; object-fit: contain; }"
MAX_FILE_SIZE = "40mb"  # uploads beyond this are refused before any of our code runs


def build_app(pipelines: dict | None = None) -> gr.Blocks:
    """The tabbed app over `pipelines` (name -> pipeline or MissingModel; default: models.load_all())."""
    gradio_fixes.atomic_image_cache()
    pipelines = models.load_all() if pipelines is None else pipelines
    with gr.Blocks(title=TITLE) as app:
        gr.Markdown(f"## {TITLE}")
        with gr.Tab("Structure & texture"):
            structure_texture.create_demo(pipelines.get("coordgan"))
        with gr.Tab("Label propagation"):
            label_propagation.create_demo(pipelines.get("coordgan"))
        with gr.Tab("Congealing & edits"):
            congealing.create_demo(pipelines.get("gangealing"))
        if pipelines.get("gangealing_cat"):  # the Space's second GANgealing release (models.SECOND_RELEASES)
            with gr.Tab("Cats"):
                congealing.create_demo(pipelines["gangealing_cat"], name="gangealing_cat")
        with gr.Tab("Exemplar translation"):
            exemplar_translation.create_demo(pipelines.get("cocosnet"))
        with gr.Tab("Appearance transfer"):
            appearance_transfer.create_demo(pipelines.get("coat"))
        with gr.Tab("Compare"):
            compare.create_demo(pipelines)
        with gr.Tab("Synthetic data"):
            synthetic_data.create_demo()
        match_api.create(pipelines)  # /match_points (hidden: an API for scripts; each tab has its own clicks)
        face_api.create()  # /align_face (hidden: the face tabs align their photos themselves)
        models_api.create(pipelines)  # /models: which weights each tab runs
    return app


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ
    parser.add_argument("--host", default=env.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                        help="interface to listen on (0.0.0.0 for all)")
    parser.add_argument("--port", type=int, default=int(env.get("GRADIO_SERVER_PORT", 7860)),
                        help="port (default: $GRADIO_SERVER_PORT or 7860)")
    for spec in models.SPECS.values():
        parser.add_argument(spec.flag, default=None, metavar="DIR_OR_REPO",
                            help=f"{spec.name} pipeline: {spec.accepts}, or official:NAME (a named release of the "
                                 f"authors) (default: ${spec.env}, else as --models says)")
    parser.add_argument("--models", choices=models.MODES, default=None,
                        help="what a tab runs when no flag or variable names its model: the bundled toy models, or "
                             "the authors' releases (downloaded and converted once; a release that cannot arrive "
                             "falls back to the bundled model) (default: official on a Hugging Face Space, where "
                             "SPACE_ID is set, else bundled)")
    parser.add_argument("--concurrency", type=int, default=int(env.get("APP_CONCURRENCY", 2)),
                        help="model calls running at once; the rest wait in the queue (default: $APP_CONCURRENCY or 2)")
    parser.add_argument("--max-queue", type=int, default=64,
                        help="requests that may wait in the queue before new ones are turned away")
    parser.add_argument("--share", action="store_true",
                        help="also open a public gradio.live link (reaches the network)")
    parser.add_argument("--precision", default=env.get("APP_PRECISION", "auto"), choices=models.PRECISIONS,
                        help="compute precision of the models: fp32; mixed (bf16 with each package's precision-"
                             "sensitive parts in fp32, bench/README.md); bf16 or fp16 autocast; or auto: mixed where "
                             "the device computes bf16 natively (avx512_bf16 / AMX CPUs, CUDA) for the models whose "
                             "measured error stays within 40 dB of fp32, else fp32 (default: $APP_PRECISION or auto)")
    return parser.parse_args(argv)


def main(argv=None, block: bool = True) -> gr.Blocks:
    """Load the models once, build the app and serve it; with block=False return the running app."""
    args = parse_args(argv)
    sources = {name: getattr(args, name) for name in models.SPECS}
    pipelines = models.load_all(sources, precision=args.precision, mode=args.models)
    for name, pipe in pipelines.items():
        state = pipe.message if isinstance(pipe,
                                           models.MissingModel) else f"loaded on {models.device()} ({pipe.precision})"
        print(f"{name}: {state}")
    app = build_app(pipelines)
    app.queue(default_concurrency_limit=args.concurrency, max_size=args.max_queue)
    app.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        max_file_size=MAX_FILE_SIZE,
        css=CSS,
        prevent_thread_lock=not block,
        quiet=not block,
    )
    return app


if __name__ == "__main__":
    main()
