"""Videos in and out of edit propagation (demos/video.py, PyAV): the limits read from the header,
frames streamed through GANgealingPipeline.propagate_edit in batches, H.264 MP4 out at the
input's frame rate with its audio, GIF in -> GIF out; through gradio_client against conftest's
app_server (tiny random pipelines)."""

import time
from fractions import Fraction

import av
import gradio as gr
import numpy as np
import pytest
from PIL import Image

import synthetic
from demos import video
from gangealing import tiny_random_pipeline


def make_video(path, num_frames, fps, size=64, audio_codec=None, container_format=None, faststart=False):
    """A test video written with PyAV directly (not with demos/video.py): synthetic faces turning,
    optionally a 440 Hz mono tone."""
    faces = synthetic.sample("faces", min(num_frames, 8), resolution=size, seed=5, pose="medium").image
    options = {"movflags": "+faststart"} if faststart else {}
    with av.open(str(path), "w", format=container_format, container_options=options) as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        if audio_codec:
            audio = out.add_stream(audio_codec, rate=16000, layout="mono")
        for i in range(num_frames):
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(faces[i % len(faces)]), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
        if audio_codec:
            samples = int(16000 * num_frames / fps)
            tone = 0.2 * np.sin(2 * np.pi * 440 * np.arange(samples) / 16000)
            sample_format = audio.codec_context.format.name
            for start in range(0, samples, 1024):
                chunk = tone[start : start + 1024][None]
                chunk = (chunk * 32767).astype(np.int16) if sample_format == "s16" else chunk.astype(np.float32)
                frame = av.AudioFrame.from_ndarray(chunk, format=sample_format, layout="mono")
                frame.sample_rate, frame.pts = 16000, start
                out.mux(audio.encode(frame))
            out.mux(audio.encode(None))
    return path


def streams(path) -> dict:
    with av.open(str(path)) as c:
        v = c.streams.video[0]
        return dict(frames=sum(1 for _ in c.decode(v)), fps=v.average_rate,
                    size=(v.codec_context.width, v.codec_context.height),
                    codec=v.codec_context.name, pix_fmt=v.codec_context.pix_fmt,
                    audio=[a.codec_context.name for a in c.streams.audio])


@pytest.fixture(scope="module")
def edit_file(tmp_path_factory):
    edit = np.zeros((32, 32, 4), np.uint8)
    edit[:16] = [255, 0, 0, 255]
    path = tmp_path_factory.mktemp("edit") / "edit.png"
    Image.fromarray(edit).save(path)
    return path


# ---------------------------------------------------------------- demos/video.py and the pipeline, no app
def test_reader_streams_and_writer_keeps_rate_size_and_audio(tmp_path):
    src = make_video(tmp_path / "in.mkv", 30, 25, size=50, audio_codec="pcm_s16le", container_format="matroska")
    reader = video.VideoReader(src)
    assert (reader.width, reader.height, reader.frames, reader.fps, reader.has_audio) == (50, 50, 30, 25, True)
    out = video.write_like(reader, (frame.transpose(Image.Transpose.FLIP_LEFT_RIGHT) for frame in reader),
                           str(tmp_path / "out.mp4"))
    # H.264 needs even sides for yuv420p: 50 stays 50; PCM is not for MP4, so it is re-encoded to AAC
    assert streams(out) == dict(frames=30, fps=25, size=(50, 50), codec="h264", pix_fmt="yuv420p", audio=["aac"])
    odd = video.write_mp4([Image.new("RGB", (33, 17), (200, 30, 30))] * 3, str(tmp_path / "odd.mp4"), Fraction(10))
    assert streams(odd)["size"] == (34, 18) and streams(odd)["audio"] == []


def test_pipeline_propagate_edit_pulls_one_batch_at_a_time():
    pipe = tiny_random_pipeline(seed=0)
    edit = np.zeros((32, 32, 4), np.uint8)
    edit[8:20] = [0, 255, 0, 255]
    frames = [Image.fromarray(f) for f in synthetic.sample("faces", 20, resolution=40, seed=1).image]
    pulled = []

    def source():
        for f in frames:
            pulled.append(f)
            yield f

    edited = pipe.propagate_edit(edit, source(), batch_size=8)
    assert not pulled  # a generator in, a generator out: nothing read yet
    first = next(edited)
    assert len(pulled) == 8
    rest = list(edited)
    assert len(pulled) == 20 and len(rest) == 19
    expected = pipe.propagate_edit(edit, frames)  # a list in, a list out, as before
    assert isinstance(expected, list)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip([first, *rest], expected))


def test_limits_come_from_the_header(tmp_path):
    # 600 frames at 1 fps, 16 px; then cut right after the header, so no frame could be decoded
    full = make_video(tmp_path / "ten_minutes.mp4", 600, 1, size=16, faststart=True).read_bytes()
    header_only = tmp_path / "header_only.mp4"
    header_only.write_bytes(full[: full.index(b"mdat") + 4])
    start = time.perf_counter()
    with pytest.raises(gr.Error, match=r"lasts 600\.0 s, longer than 10 seconds; trim it"):
        video.VideoReader(header_only)
    assert time.perf_counter() - start < 1
    fast = make_video(tmp_path / "many_frames.mp4", 121, 30, size=16)  # 4 s, one frame over the limit
    with pytest.raises(gr.Error, match="has 121 frames; the limit is 120 frames"):
        video.VideoReader(fast)
    wide = tmp_path / "wide.webp"
    Image.new("RGB", (1030, 20)).save(wide, save_all=True, append_images=[Image.new("RGB", (1030, 20))], duration=100)
    with pytest.raises(gr.Error, match="1030x20 pixels; videos may have at most 1024 pixels a side"):
        video.VideoReader(wide)
    text = tmp_path / "clip.mp4"
    text.write_text("not a video\n" * 20)
    with pytest.raises(gr.Error, match="'clip.mp4' is not a video file. Upload an MP4"):
        video.VideoReader(text)


# ---------------------------------------------------------------- through the API
@pytest.fixture(scope="module")
def client(app_server):
    from gradio_client import Client

    return Client(app_server.url, verbose=False)


def call(client, edit_file, video_path, image_path=None):
    from gradio_client import handle_file

    return client.predict(handle_file(str(edit_file)), handle_file(str(image_path or video_path)), None,
                          handle_file(str(video_path)),
                          api_name="/propagate_edit")


def app_error(fn):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        fn()
    return str(info.value)


def test_mp4_in_mp4_out_with_audio(client, app_server, edit_file, tmp_path):
    src = make_video(tmp_path / "clip.mp4", 60, 12, size=64, audio_codec="aac")
    first = next(iter(video.VideoReader(src)))
    first.save(tmp_path / "first.png")
    _, _, out = call(client, edit_file, src, tmp_path / "first.png")
    assert out.endswith(".mp4")
    assert streams(out) == dict(frames=60, fps=12, size=(64, 64), codec="h264", pix_fmt="yuv420p", audio=["aac"])
    with av.open(src) as a, av.open(out) as b:  # AAC is copied packet by packet, not re-encoded
        assert ([bytes(p) for p in a.demux(a.streams.audio[0]) if p.size]
                == [bytes(p) for p in b.demux(b.streams.audio[0]) if p.size])
    # the first frame is the pipeline's edit of the first input frame, up to H.264's loss
    expected = np.asarray(app_server.pipelines["gangealing"].propagate_edit(Image.open(edit_file), [first])[0],
                          np.float32)
    got = np.asarray(next(iter(video.VideoReader(out))), np.float32)
    # the edit shows
    assert np.abs(got - expected).mean() < 4 and np.abs(got - np.asarray(first, np.float32)).mean() > 10


def test_gif_in_gif_out(client, edit_file, tmp_path):
    frames = [Image.fromarray(f) for f in synthetic.sample("faces", 5, resolution=48, seed=2).image]
    src = tmp_path / "clip.gif"
    frames[0].save(src, save_all=True, append_images=frames[1:], duration=[100, 200, 100, 300, 100], loop=0)
    _, _, out = call(client, edit_file, src, tmp_path / "clip.gif")
    gif = Image.open(out)
    assert out.endswith(".gif") and gif.n_frames == 5 and gif.size == (48, 48)
    durations = []
    for i in range(5):
        gif.seek(i)
        durations.append(gif.info["duration"])
    assert durations == [100, 200, 100, 300, 100]  # each frame's own duration


def test_long_and_non_video_files_are_refused(client, edit_file, tmp_path):
    full = make_video(tmp_path / "ten_minutes.mp4", 600, 1, size=16).read_bytes()
    (tmp_path / "ten_minutes.mp4").write_bytes(full)
    start = time.perf_counter()
    msg = app_error(lambda: call(client, edit_file, tmp_path / "ten_minutes.mp4", edit_file))
    assert "lasts 600.0 s, longer than 10 seconds; trim it" in msg and time.perf_counter() - start < 10
    fake = tmp_path / "notes.mp4"
    fake.write_text("this is not a video\n" * 10)
    assert "'notes.mp4' is not a video file. Upload an MP4, MOV, WebM or MKV video, or an animated GIF" in app_error(
        lambda: call(client, edit_file, fake, edit_file))
    text = tmp_path / "notes.txt"
    text.write_text("this is not a video\n")
    # the upload widget's own check
    assert "Invalid file type" in app_error(lambda: call(client, edit_file, text, edit_file))
