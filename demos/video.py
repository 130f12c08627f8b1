"""Reading and writing videos through PyAV (`av`, whose wheel ships FFmpeg's libraries).

A video is probed from its container's header (duration, frame count, frame rate, size) and
refused with a gr.Error over the limits in `inputs` before a frame is decoded; its frames then
stream in as RGB PIL images, so a caller holds one batch at a time, and the results stream out:
an H.264 MP4 at the input's frame rate, with the input's audio. Animated images (GIF, WebP,
APNG) are read with Pillow, because FFmpeg does not decode animated WebP, and written back as
a GIF; their frame durations sit in each frame's own header, so their length is checked as
their frames are read (their size and frame count still from the header).

>>> reader = VideoReader("clip.mp4")                        # doctest: +SKIP
>>> write_like(reader, (frame.rotate(180) for frame in reader), "out.mp4")   # doctest: +SKIP
"""

from __future__ import annotations

import itertools
import tempfile
from fractions import Fraction
from pathlib import Path
from typing import Iterable, Iterator

import av
import gradio as gr
import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

from .inputs import MAX_VIDEO_FRAMES, MAX_VIDEO_SECONDS, MAX_VIDEO_SIDE, VIDEO_FORMATS, to_rgb

VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".webm", ".mkv", ".avi", ".gif", ".webp", ".png")  # for the upload widget
CONTAINERS = {"mov", "mp4", "matroska", "webm", "avi"}  # FFmpeg demuxer names read as videos (not e.g. its text "tty")
# copied into the MP4 as they are; others (Opus, Vorbis, PCM, ...) re-encoded to AAC, which every browser plays
REMUX_AUDIO = {"aac", "mp3"}
H264_OPTIONS = {"crf": "20", "preset": "veryfast"}  # visually lossless on these frames, about 2x faster than "medium"


def _too_long(what: str, seconds: float | None = None) -> gr.Error:
    length = f"lasts {seconds:.1f} s, " if seconds is not None else "is "
    return gr.Error(f"The {what} {length}longer than {MAX_VIDEO_SECONDS:g} seconds; trim it to at most "
                    f"{MAX_VIDEO_SECONDS:g} s and upload it again.")


def _too_many_frames(what: str, frames: int | None = None) -> gr.Error:
    count = f"has {frames} frames" if frames is not None else f"has more than {MAX_VIDEO_FRAMES} frames"
    return gr.Error(f"The {what} {count}; the limit is {MAX_VIDEO_FRAMES} frames. Trim it or lower its frame rate and "
                    "upload it again.")


def _check_side(width: int, height: int, what: str) -> None:
    if max(width, height) > MAX_VIDEO_SIDE:
        raise gr.Error(f"The {what} is {width}x{height} pixels; videos may have at most {MAX_VIDEO_SIDE} pixels a "
                       "side. Scale it down and upload it again.")


class VideoReader:
    """A video file, probed and checked at construction; iterate it for its RGB frames.

    Attributes: `width`, `height`, `frames` (the header's count; for a container without one,
    duration x frame rate; None when neither is known), `seconds` (None for an animated image
    until it is read), `fps` (Fraction), `has_audio`, `animated_image` (GIF / WebP / APNG, read
    with Pillow), `frame_seconds` (each frame's duration, filled in as the frames are read).
    """

    def __init__(self, source, what: str = "video"):
        if source is None:
            raise gr.Error(f"No {what} given: upload {VIDEO_FORMATS} first.")
        self.path, self.what = str(source), what
        self.frame_seconds: list[float] = []
        self.has_audio = False
        try:
            image = Image.open(self.path)  # reads the header only
        except UnidentifiedImageError:
            image = None  # not an image: a video container, or neither
        except Image.DecompressionBombError:
            raise gr.Error(f"The {what} is far too large to decode; videos may have at most {MAX_VIDEO_SIDE} "
                           "pixels a side.") from None
        except OSError:
            raise gr.Error(f"{Path(self.path).name!r} cannot be read; upload {VIDEO_FORMATS}.") from None
        self.animated_image = image is not None
        if image is None:
            self._probe_container()
        else:
            with image:
                self.width, self.height = image.size
                self.frames = getattr(image, "n_frames", 1)
                self.seconds = None
                # the first frame's; GIF output keeps each frame's own
                self.fps = Fraction(1000, int(image.info.get("duration") or 100))
        _check_side(self.width, self.height, what)
        # first: a long video's message names its length
        if self.seconds is not None and self.seconds > MAX_VIDEO_SECONDS:
            raise _too_long(what, self.seconds)
        if self.frames is not None and self.frames > MAX_VIDEO_FRAMES:
            raise _too_many_frames(what, self.frames)

    def _probe_container(self) -> None:
        not_a_video = gr.Error(f"{Path(self.path).name!r} is not a video file. Upload {VIDEO_FORMATS}.")
        try:
            container = av.open(self.path)
        except (av.FFmpegError, OSError, UnicodeDecodeError):
            raise not_a_video from None
        with container:
            if not set(container.format.name.split(",")) & CONTAINERS or not container.streams.video:
                raise not_a_video
            stream = container.streams.video[0]
            self.width, self.height = stream.codec_context.width, stream.codec_context.height
            if not self.width or not self.height:
                raise not_a_video
            self.fps = Fraction(stream.average_rate or stream.guessed_rate or stream.base_rate or 25)
            if container.duration:  # microseconds
                self.seconds = container.duration / 1_000_000
            elif stream.duration and stream.time_base:
                self.seconds = float(stream.duration * stream.time_base)
            else:
                self.seconds = None
            self.frames = stream.frames or (round(self.seconds * self.fps) if self.seconds is not None else None)
            self.has_audio = bool(container.streams.audio)

    @property
    def suffix(self) -> str:
        """The output's: a GIF for an animated image, an MP4 for a video."""
        return ".gif" if self.animated_image else ".mp4"

    def __iter__(self) -> Iterator[Image.Image]:
        """RGB frames, decoded one at a time. A header that understated the length is caught
        here: past MAX_VIDEO_FRAMES frames or MAX_VIDEO_SECONDS the iteration raises gr.Error."""
        self.frame_seconds.clear()  # in place: a writer may hold this list
        for i, (frame, seconds) in enumerate(self._animation() if self.animated_image else self._decode()):
            if i >= MAX_VIDEO_FRAMES:
                raise _too_many_frames(self.what)
            self.frame_seconds.append(seconds)
            if sum(self.frame_seconds) > MAX_VIDEO_SECONDS + 1e-6:
                raise _too_long(self.what)
            yield frame

    def _animation(self):
        with Image.open(self.path) as im:
            for frame in ImageSequence.Iterator(im):
                yield to_rgb(frame.copy()), float(frame.info.get("duration") or 100) / 1000

    def _decode(self):
        with av.open(self.path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            try:
                for frame in container.decode(stream):
                    yield frame.to_image(), float(1 / self.fps)
            except av.FFmpegError:
                raise gr.Error(f"The {self.what} file is truncated or corrupt; "
                               "export it again and upload it.") from None


def _even(image: Image.Image) -> np.ndarray:
    """RGB uint8 with even width and height (yuv420p halves both): the last row/column repeated."""
    a = np.asarray(image.convert("RGB"))
    return np.pad(a, ((0, a.shape[0] % 2), (0, a.shape[1] % 2), (0, 0)), mode="edge")


def write_mp4(frames: Iterable[Image.Image], path: str, fps: Fraction, audio_from: str | None = None) -> str:
    """Encode frames (consumed one at a time) as H.264 yuv420p at `fps`; the first audio stream of
    `audio_from` is copied packet by packet when it is AAC or MP3, else re-encoded to AAC."""
    frames = iter(frames)
    first = next(frames, None)
    if first is None:
        raise ValueError("write_mp4 needs at least one frame")
    source = av.open(audio_from) if audio_from else None
    try:
        with av.open(path, "w", format="mp4", container_options={"movflags": "+faststart"}) as out:
            video = out.add_stream("libx264", rate=fps, options=dict(H264_OPTIONS))
            video.height, video.width = _even(first).shape[:2]
            video.pix_fmt = "yuv420p"
            audio_in = source.streams.audio[0] if source is not None and source.streams.audio else None
            remux = audio_in is not None and audio_in.codec_context.name in REMUX_AUDIO
            if remux:
                audio_out = out.add_stream_from_template(audio_in)
            elif audio_in is not None:
                # AAC needs a named layout; more channels are mixed down
                layout = "mono" if audio_in.codec_context.channels == 1 else "stereo"
                audio_out = out.add_stream("aac", rate=audio_in.codec_context.sample_rate, layout=layout)
            for i, image in enumerate(itertools.chain([first], frames)):
                frame = av.VideoFrame.from_ndarray(_even(image), format="rgb24")
                frame.pts, frame.time_base = i, 1 / fps
                out.mux(video.encode(frame))
            out.mux(video.encode(None))
            if audio_in is not None:
                if remux:
                    for packet in source.demux(audio_in):
                        if packet.dts is not None:  # the demuxer's final empty packet
                            packet.stream = audio_out
                            out.mux(packet)
                else:
                    for frame in source.decode(audio_in):
                        frame.pts = None  # the encoder counts samples itself
                        out.mux(audio_out.encode(frame))
                    out.mux(audio_out.encode(None))
    finally:
        if source is not None:
            source.close()
    return path


def write_gif(frames: Iterable[Image.Image], path: str, frame_seconds) -> str:
    """An animated GIF; `frame_seconds` (a list, or one number) is read after the frames, so it
    may be a reader's, filled in while the frames are consumed."""
    # quantized as they come (1 byte a pixel kept until the file is written), 4x faster than the GIF writer's own
    frames = [f.convert("RGB").quantize(256, method=Image.Quantize.FASTOCTREE) for f in frames]
    if not frames:
        raise ValueError("write_gif needs at least one frame")
    seconds = frame_seconds if isinstance(frame_seconds, (list, tuple)) else [frame_seconds] * len(frames)
    durations = [int(round(s * 1000)) for s in seconds[: len(frames)]]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=durations, loop=0)
    return path


def write_like(reader: VideoReader, frames: Iterable[Image.Image], path: str | None = None) -> str:
    """Write frames as the reader's input was: a GIF for an animated image (each frame's duration
    kept), else an MP4 at its frame rate with its audio. Returns the path (a new temporary file
    when none is given)."""
    path = path or tempfile.NamedTemporaryFile(suffix=reader.suffix, delete=False).name
    if reader.animated_image:
        return write_gif(frames, path, reader.frame_seconds)
    return write_mp4(frames, path, reader.fps, reader.path if reader.has_audio else None)


def load_video_frames(source, what: str = "video") -> tuple[list[Image.Image], float]:
    """A short video -> (all its RGB frames, seconds per frame), for examples and tests; the app
    streams frames instead (demos/video.py, which applies the same limits)."""
    reader = VideoReader(source, what)
    frames = list(reader)
    return frames, sum(reader.frame_seconds) / len(frames)
