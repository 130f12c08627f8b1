"""A model folder says which face crop its training faces used (`face_frame` in model_index.json, written
by train/ from --face-frame), and the app aligns a visitor's photo to that frame (issue #24: a user's own
face model gets "Align the face" too)."""

import argparse
import importlib

import pytest

from demos import face_photos, models
from train import common


@pytest.mark.parametrize("package", ["coordgan", "gangealing", "cocosnet", "coat"])
def test_face_frame_survives_save_and_load_and_picks_the_apps_frame(package, tmp_path):
    module = importlib.import_module(package)
    pipe = module.tiny_random_pipeline(seed=0)
    assert pipe.config.get("face_frame") is None and face_photos.frame_for(pipe) is None  # no frame: no alignment
    args = argparse.Namespace(face_frame="ffhq")
    common.with_face_frame(pipe, args).save_pretrained(tmp_path)
    loaded = type(pipe).from_pretrained(tmp_path)
    assert loaded.config["face_frame"] == "ffhq" and face_photos.frame_for(loaded) == "ffhq"
    # the folder's own frame wins over the bundled models' synthetic one
    assert face_photos.frame_for(models._mark(loaded, kind="bundled")) == "ffhq"


def test_face_frame_flag_defaults_by_data():
    parser = argparse.ArgumentParser()
    common.add_training_args(parser, {"tiny": None})
    parse = lambda *argv: common.parse_training_args(parser, ["--output", "x", *argv]).face_frame  # noqa: E731
    assert parse() == "synthetic" and parse("--data", "synthetic:cats") == "none"
    assert parse("--data", "folder:photos", "--face-frame", "celebahq") == "celebahq"
    with pytest.raises(SystemExit):
        parse("--face-frame", "passport")
