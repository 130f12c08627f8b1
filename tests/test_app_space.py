"""`SPACE_ID=x/y python app.py` with no network and nothing cached (issue #23): the app starts,
every pipeline is its bundled model with a note that the authors' release could not be loaded,
and a tab answers. Launched in-process on a free port; every cache in tmp_path."""

import socket

import numpy as np

import cocosnet.convert_official as cocosnet_converter
import cocosnet.releases as cocosnet_releases
import coordgan.convert_official as coordgan_converter
import coordgan.releases as coordgan_releases
import gangealing.convert_official as gangealing_converter
import gangealing.releases as gangealing_releases


def test_a_space_offline_starts_and_answers_with_the_bundled_models(tmp_path, monkeypatch, capsys):
    import app
    from gradio_client import Client

    for converter in (coordgan_converter, gangealing_converter, cocosnet_converter):
        monkeypatch.setattr(converter, "CONVERTED_CACHE", tmp_path / "converted")
    for releases in (coordgan_releases, gangealing_releases, cocosnet_releases):
        monkeypatch.setattr(releases, "DOWNLOAD_CACHE", tmp_path / releases.__name__)
    monkeypatch.setenv("SPACE_ID", "x/y")  # the tests run with HF_HUB_OFFLINE=1: nothing is reached
    for variable in ("COORDGAN_MODEL", "GANGEALING_MODEL", "COCOSNET_MODEL", "COAT_MODEL"):
        monkeypatch.delenv(variable, raising=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    demo = app.main(["--host", "127.0.0.1", "--port", str(port)], block=False)
    try:
        log = capsys.readouterr()
        for name, release in app.models.RELEASE_DEFAULTS.items():
            assert f"{name}: The authors' release `{release}` could not be loaded" in log.err
            assert f"{name}: {app.models.SPECS[name].default} loaded in " in log.err
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)
        image, correspondence = client.predict(3, 7, api_name="/generate")  # CoordGAN's bundled 64 px model answers
        from PIL import Image

        assert np.asarray(Image.open(image)).shape[:2] == (64, 64)
        info = client.predict(api_name="/models")  # what each tab's first line says, as JSON
        for name, release in app.models.RELEASE_DEFAULTS.items():
            assert info[name]["kind"] == "bundled" and f"`{release}` could not be loaded" in info[name]["note"]
            assert info[name]["line"].startswith("⚠️") and "runs the bundled model instead" in info[name]["line"]
        assert info["coat"]["kind"] == "bundled" and not info["coat"]["note"]  # COAT has no authors' release
    finally:
        demo.close()
