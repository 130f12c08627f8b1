"""Named releases (`official:NAME`) of CoordGAN, GANgealing and CoCosNet against a real HTTP server
on 127.0.0.1 (tests/helpers/release_server.py) standing in for the Hugging Face Hub (HF_ENDPOINT),
the authors' GANgealing server (GANGEALING_RELEASE_URL) and Google Drive (COCOSNET_DRIVE_URL).
The served files have the authors' key layouts (tests/helpers/authors_files.py: a few kB each)
under names no table in the code holds. Checked: found, classified, converted, loaded, cached (a
second start fetches and converts nothing); a dropped connection mid-file; a 404; a file of
another model; offline with nothing cached (the message says the command to run once online);
a download killed midway is fetched again, never loaded truncated.

Not exercised here: the real hosts, and gdown's requests to Google Drive (the Drive stand-in
speaks a plain JSON protocol to cocosnet.releases; gdown is used only without COCOSNET_DRIVE_URL).
"""

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from huggingface_hub import constants

import cocosnet.convert_official as cocosnet_converter
import cocosnet.releases as cocosnet_releases
import coordgan.convert_official as coordgan_converter
import coordgan.releases as coordgan_releases
import gangealing.convert_official as gangealing_converter
import gangealing.releases as gangealing_releases
from tests.helpers.authors_files import authors_checkpoint
from tests.helpers.release_server import ReleaseServer

ROOT = Path(__file__).resolve().parents[1]
REPO = coordgan_releases.RELEASE_REPO


def saved(obj) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


@pytest.fixture
def server(tmp_path, monkeypatch):
    """The server, every cache in tmp_path, and the machine online for the code under test."""
    server = ReleaseServer()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    monkeypatch.setenv("GANGEALING_RELEASE_URL", server.url + "/gangealing/{name}.pt")
    monkeypatch.setenv("COCOSNET_DRIVE_URL", server.url + "/drive")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(coordgan_releases, "DOWNLOAD_CACHE", tmp_path / "hub")
    monkeypatch.setattr(gangealing_releases, "DOWNLOAD_CACHE", tmp_path / "gangealing-downloads")
    monkeypatch.setattr(cocosnet_releases, "DOWNLOAD_CACHE", tmp_path / "cocosnet-downloads")
    for converter in (coordgan_converter, gangealing_converter, cocosnet_converter):
        monkeypatch.setattr(converter, "CONVERTED_CACHE", tmp_path / "converted")
    yield server
    server.close()


def offline(monkeypatch):
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)


# ------------------------------------------------------------------ CoordGAN: the Hub, a rule, the keys
def coordgan_dataset(server: ReleaseServer) -> None:
    """The dataset as the authors might have laid it out, under names in no table of ours."""
    server.add_dataset_file(REPO, "README.md", b"CoordGAN\n")
    server.add_dataset_file(REPO, "data/celeba_labels/0001.png", b"not a checkpoint")
    server.add_dataset_file(
        REPO, "coordgan_checkpoints/CelebAHQ-stage1_iter300000.pt", saved(authors_checkpoint("coordgan"))
    )
    server.add_dataset_file(
        REPO, "coordgan_checkpoints/celeba-inversion_e_final.pth", saved(authors_checkpoint("coordgan-encoder"))
    )
    server.add_dataset_file(REPO, "coordgan_checkpoints/celeba_512_ft.pt", b"never fetched for official:celebA")
    server.add_dataset_file(REPO, "coordgan_checkpoints/afhq-cats_300k.pt", b"never fetched for official:celebA")


def test_coordgan_release_is_found_classified_converted_loaded_and_cached(server, monkeypatch, capsys):
    coordgan_dataset(server)
    pipe = coordgan_converter.load_release("official:celebA")
    assert pipe.generator.resolution == 128 and type(pipe.encoder).__name__ == "CoordGANOfficialEncoder"
    fetched = sorted(Path(p).name for p in server.downloads)
    assert fetched == ["CelebAHQ-stage1_iter300000.pt", "celeba-inversion_e_final.pth"], (
        fetched
    )  # by the rule, then the keys
    assert (
        "official:celebA: coordgan_checkpoints/CelebAHQ-stage1_iter300000.pt from the dataset"
        in capsys.readouterr().err
    )
    folder = coordgan_converter.release_folder("celebA")
    assert (folder / "model_index.json").is_file() and not list(folder.parent.glob("*.tmp*"))
    # a second start: offline, the server gone: nothing fetched, nothing converted
    offline(monkeypatch)
    server.close()
    stamp = (folder / "model_index.json").stat().st_mtime_ns
    again = coordgan_converter.load_release("celebA")
    assert again.generator.resolution == 128 and (folder / "model_index.json").stat().st_mtime_ns == stamp
    assert len(server.downloads) == 2


def test_coordgan_512_release_is_told_from_the_128_by_its_shapes(server):
    """official:celebA-512 takes the file whose generator has the 512 px stages, and the encoder file."""
    server.add_dataset_file(REPO, "coordgan_checkpoints/celebA-hq_generator.pt", saved(authors_checkpoint("coordgan")))
    server.add_dataset_file(
        REPO, "coordgan_checkpoints/celebA-hq_generator_v2.pt", saved(authors_checkpoint("coordgan-512"))
    )
    server.add_dataset_file(
        REPO, "coordgan_checkpoints/celebA-hq_inversion.pt", saved(authors_checkpoint("coordgan-encoder"))
    )
    files = coordgan_converter.release_files("celebA-512")
    assert files["generator"].name == "celebA-hq_generator_v2.pt" and files["encoder"].name == "celebA-hq_inversion.pt"
    assert coordgan_converter.release_files("celebA")["generator"].name == "celebA-hq_generator.pt"


def test_coordgan_release_without_a_fitting_file_lists_what_is_there(server):
    server.add_dataset_file(REPO, "README.md", b"CoordGAN\n")
    server.add_dataset_file(
        REPO, "coordgan_checkpoints/celeba_best.pt", saved(authors_checkpoint("gangealing"))
    )  # another model's
    with pytest.raises(ValueError) as info:
        coordgan_converter.load_release("official:celebA")
    message = str(info.value)
    assert message.startswith(
        f"official:celebA: no 128 px CoordGAN generator among the files of {REPO} whose names mention celeba; "
        "refused: coordgan_checkpoints/celeba_best.pt (it looks like a GANgealing release (g_ema, t_ema, ll), "
        "not one of the authors' CoordGAN checkpoints); the dataset holds README.md, "
        "coordgan_checkpoints/celeba_best.pt"
    ), message
    assert not coordgan_converter.release_folder("celebA").exists()


@pytest.mark.parametrize("fault", ["drop", "404"])
def test_coordgan_download_that_fails_says_so_and_leaves_nothing_complete(server, fault):
    coordgan_dataset(server)
    path = "/datasets/" + REPO + "/resolve/main/coordgan_checkpoints/CelebAHQ-stage1_iter300000.pt"
    server.faults[path] = fault
    with pytest.raises(
        ValueError,
        match=r"official:celebA: downloading coordgan_checkpoints/CelebAHQ-stage1_iter300000.pt from the "
        r"dataset .* failed \(.*\); run once with network access: python -m coordgan.convert_official official:celebA",
    ):
        coordgan_converter.load_release("official:celebA")
    assert not coordgan_converter.release_folder("celebA").exists()
    snapshots = list((coordgan_releases.DOWNLOAD_CACHE).rglob("CelebAHQ-stage1_iter300000.pt"))
    assert snapshots == []  # huggingface_hub keeps an .incomplete blob, never the file
    del server.faults[path]  # the next start downloads it (resuming) and converts
    assert coordgan_converter.load_release("official:celebA").encoder is not None


def test_coordgan_offline_with_nothing_cached_says_the_command(server, monkeypatch, capsys):
    offline(monkeypatch)
    with pytest.raises(
        ValueError,
        match=r"^official:celebA is not converted here and this machine is offline \(HF_HUB_OFFLINE=1\); "
        r"run once with network access: python -m coordgan.convert_official official:celebA$",
    ):
        coordgan_converter.load_release("official:celebA")
    assert server.downloads == []
    assert (
        coordgan_converter.main(["official:celebA"]) == 2
        and "python -m coordgan.convert_official official:celebA" in capsys.readouterr().err
    )
    assert coordgan_converter.main(["official:nope", "--output", "x"]) == 2
    assert "unknown CoordGAN release 'nope'; the named releases are official:celebA" in capsys.readouterr().err


def test_the_three_commands_list_their_releases_and_sources(capsys):
    assert coordgan_converter.main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert REPO in listed and all(f"official:{n}" in listed for n in coordgan_releases.RELEASES)
    assert gangealing_converter.main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert "http://efrosgans.eecs.berkeley.edu/gangealing/pretrained/NAME.pt" in listed
    assert all(
        f"official:{n}" in listed
        for n in ("bicycle", "car", "cat", "cat_ssl_mix6", "celeba", "cub", "dog", "horse", "tvmonitor")
    )
    assert "official:celeba " in listed and "128 px, In-The-Wild CelebA faces; padding border, iters 1" in listed
    assert cocosnet_converter.main(["--list"]) == 0
    listed = capsys.readouterr().out
    assert "official:celebahq" in listed and "Drive folder 16xgIrGzGBKJWbAUROM71wiA1cf7zrQk5" in listed


# ------------------------------------------------------------------ GANgealing: the authors' URL
def test_gangealing_release_downloads_converts_once_and_is_cached(server, monkeypatch, capsys):
    server.files["/gangealing/celeba.pt"] = saved(authors_checkpoint("gangealing"))
    assert gangealing_converter.main(["official:celeba"]) == 0  # into the cache the app reads
    out = capsys.readouterr()
    assert (
        f"downloading {server.url}/gangealing/celeba.pt" in out.err and "celeba.pt: " in out.err
    )  # progress in the log
    assert "128 px generator, K=1, padding border, iters 1" in out.out
    pipe = gangealing_converter.load_release("official:celeba")
    assert (
        pipe.transformer.config.similarity_iters == 1 and pipe.target.config.inject_index == 6
    )  # the authors' celeba settings
    assert server.downloads == ["/gangealing/celeba.pt"]
    assert sorted(p.name for p in gangealing_releases.DOWNLOAD_CACHE.iterdir()) == ["celeba.pt"]  # no .part left
    assert gangealing_releases.release_url("cat") == server.url + "/gangealing/cat.pt"
    monkeypatch.delenv("GANGEALING_RELEASE_URL")
    assert gangealing_releases.release_url("cat") == "http://efrosgans.eecs.berkeley.edu/gangealing/pretrained/cat.pt"


@pytest.mark.parametrize("fault", ["drop", "404"])
def test_gangealing_download_that_fails_leaves_no_file(server, fault):
    server.files["/gangealing/cat.pt"] = saved(authors_checkpoint("gangealing"))
    server.faults["/gangealing/cat.pt"] = fault
    reason = "OSError: the connection closed after" if fault == "drop" else "HTTPError: HTTP Error 404"
    with pytest.raises(
        ValueError,
        match=rf"official:cat: downloading {server.url}/gangealing/cat.pt failed \({reason}.*\); "
        r"run once with network access: python -m gangealing.convert_official official:cat",
    ):
        gangealing_converter.load_release("official:cat")
    assert not gangealing_releases.DOWNLOAD_CACHE.exists() or list(gangealing_releases.DOWNLOAD_CACHE.iterdir()) == []


def test_gangealing_release_that_is_another_models_file(server):
    server.files["/gangealing/dog.pt"] = saved(authors_checkpoint("coordgan"))
    with pytest.raises(
        ValueError,
        match=r"dog.pt' looks like a CoordGAN train.py checkpoint .*, not one of the authors' GANgealing releases",
    ):
        gangealing_converter.load_release("official:dog")
    assert not gangealing_converter.release_folder("dog").exists()


def test_gangealing_offline_with_nothing_cached_says_the_command(server, monkeypatch):
    offline(monkeypatch)
    with pytest.raises(
        ValueError,
        match=r"official:cat is not in the cache .* and this machine is offline \(HF_HUB_OFFLINE=1\); "
        r"run once with network access: python -m gangealing.convert_official official:cat$",
    ):
        gangealing_converter.load_release("official:cat")
    assert server.downloads == []


def test_a_download_killed_midway_is_fetched_again_not_loaded_truncated(server, tmp_path):
    """A start killed (SIGKILL) while half the file has arrived leaves only celeba.pt.part: the next
    start downloads the whole file again and converts it."""
    server.files["/gangealing/celeba.pt"] = saved(authors_checkpoint("gangealing"))
    server.faults["/gangealing/celeba.pt"] = "stall"
    cache = gangealing_releases.DOWNLOAD_CACHE
    code = f"from gangealing import releases; releases.download_release('celeba', cache_dir={str(cache)!r})"
    env = dict(os.environ, HF_HUB_OFFLINE="0", OMP_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stderr=subprocess.PIPE)
    try:
        assert server.half_sent.wait(120), child.stderr.read().decode() if child.poll() is not None else "no request"
        time.sleep(0.2)  # the half has reached the .part file
        assert (cache / "celeba.pt.part").is_file() and not (cache / "celeba.pt").exists()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    server.release()
    del server.faults["/gangealing/celeba.pt"]
    pipe = gangealing_converter.load_release("official:celeba")
    assert server.downloads == ["/gangealing/celeba.pt", "/gangealing/celeba.pt"] and pipe.generator.resolution == 128
    assert sorted(p.name for p in cache.iterdir()) == ["celeba.pt"]


# ------------------------------------------------------------------ CoCosNet: Drive folders
def cocosnet_folder(server: ReleaseServer, generator: bytes | None = None) -> str:
    folder_id = cocosnet_releases.RELEASES["celebahq"].folder_id
    server.add_drive_folder(
        folder_id,
        {
            "celebahq/G_epoch60.pth": generator if generator is not None else saved(authors_checkpoint("cocosnet-G")),
            "celebahq/corr-epoch60.pth": saved(authors_checkpoint("cocosnet-Corr")),
            "celebahq/latest_net_D.pth": b"the discriminator: never fetched",
            "celebahq/opt.txt": b"options",
        },
    )
    return folder_id


def test_cocosnet_release_is_found_classified_converted_loaded_and_cached(server, monkeypatch):
    cocosnet_folder(server)
    pipe = cocosnet_converter.load_release("official:celebahq")
    assert (
        pipe.correspondence_network.config.input_channels == 19 and pipe.input_kind == "mask"
    )  # the face-parsing release
    assert len(server.downloads) == 2 and all(p.startswith("/drive/files/") for p in server.downloads)
    assert sorted(p.name for p in (cocosnet_releases.DOWNLOAD_CACHE / "celebahq").iterdir()) == [
        "G_epoch60.pth",
        "corr-epoch60.pth",
        "files.json",
    ]
    offline(monkeypatch)
    server.close()
    assert cocosnet_converter.load_release("celebahq").generator is not None and len(server.downloads) == 2


def test_cocosnet_release_failures(server, monkeypatch):
    folder_id = cocosnet_folder(server, generator=saved(authors_checkpoint("gangealing")))
    with pytest.raises(
        ValueError,
        match=r"official:celebahq: the generator of CoCosNet's release is not among the files of its Drive "
        r"folder .*: G_epoch60.pth, corr-epoch60.pth; refused: G_epoch60.pth \(it looks like a GANgealing",
    ):
        cocosnet_converter.load_release("official:celebahq")
    # a 404 and a dropped file, on a fresh cache
    monkeypatch.setattr(cocosnet_releases, "DOWNLOAD_CACHE", cocosnet_releases.DOWNLOAD_CACHE.with_name("again"))
    first = next(p for p in server.files if p.startswith("/drive/files/"))
    for fault in ("404", "drop"):
        server.faults[first] = fault
        with pytest.raises(
            ValueError,
            match=rf"official:celebahq: downloading the Drive folder {folder_id} failed .*"
            r"run once with network access: python -m cocosnet.convert_official official:celebahq",
        ):
            cocosnet_converter.load_release("official:celebahq")
        assert not any(p.suffix == ".pth" for p in cocosnet_releases.DOWNLOAD_CACHE.rglob("*"))
    offline(monkeypatch)
    monkeypatch.setattr(cocosnet_releases, "DOWNLOAD_CACHE", cocosnet_releases.DOWNLOAD_CACHE.with_name("empty"))
    with pytest.raises(
        ValueError,
        match=r"official:celebahq is not in the cache .* offline .*"
        r"python -m cocosnet.convert_official official:celebahq",
    ):
        cocosnet_converter.load_release("official:celebahq")
