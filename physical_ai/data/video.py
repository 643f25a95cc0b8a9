"""Camera frames as MP4 video, the way LeRobot datasets store them (PyAV; H.264, yuv420p, short GOP).

H.264 rather than LeRobot's default AV1: every LeRobot decoder (PyAV, torchcodec) and every viewer (Foxglove,
browsers) plays it, and libx264 ships inside PyAV's wheels. A GOP of 2 frames keeps random access cheap, as LeRobot
does (a training sampler seeks to single frames).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

CODEC = "libx264"
PIX_FMT = "yuv420p"
GOP = 2
CRF = 18  # visually lossless: policies are trained on these pixels


class VideoError(ValueError):
    """A video file is missing, unreadable or does not hold the frames it should; the message names the file."""


@dataclass(frozen=True)
class VideoInfo:
    """What LeRobot records per video feature in meta/info.json (`info` of the feature)."""

    height: int
    width: int
    fps: int

    def to_json(self) -> dict[str, object]:
        """The feature's `info` entry, with LeRobot's key names."""
        return {"video.height": self.height, "video.width": self.width, "video.codec": "h264",
                "video.pix_fmt": PIX_FMT, "video.is_depth_map": False, "video.fps": self.fps,
                "video.channels": 3, "video.g": GOP, "video.crf": CRF, "has_audio": False}


def encode_video(frames: np.ndarray, path: str | Path, fps: int) -> VideoInfo:
    """Encode RGB frames (T, H, W, 3) uint8 to an MP4 file at `fps`; frame i is presented at i / fps seconds.

    Args:
        frames: T >= 1 RGB frames; odd sizes are padded by one pixel (yuv420p needs even sizes) on the
            right/bottom edge, which decoding crops back.
        path: output file; written whole to a temporary name first, so a crash leaves no partial file.
        fps: frame rate (an integer, as LeRobot's info.json stores it).

    Returns:
        The stream's `VideoInfo`.
    """
    import av

    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise VideoError(f"{path}: frames must be (T>0, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    _, h, w, _ = frames.shape
    ph, pw = h + h % 2, w + w % 2
    if (ph, pw) != (h, w):
        frames = np.pad(frames, ((0, 0), (0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    logging.getLogger("libav").setLevel(logging.ERROR)
    with av.open(str(tmp), "w", format="mp4") as container:
        stream = container.add_stream(CODEC, rate=int(fps), options={"g": str(GOP), "crf": str(CRF)})
        stream.width, stream.height, stream.pix_fmt = pw, ph, PIX_FMT
        stream.thread_count = 1  # one process per core builds datasets; encoder threads would oversubscribe
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    tmp.replace(path)
    return VideoInfo(height=h, width=w, fps=int(fps))


def decode_video(path: str | Path, expected_frames: int | None = None, size: tuple[int, int] | None = None
                 ) -> np.ndarray:
    """All frames of an MP4 file as (T, H, W, 3) uint8 RGB.

    Args:
        path: the video file.
        expected_frames: raise `VideoError` unless exactly this many frames decode.
        size: (height, width) to crop to (undoes the even-size padding of `encode_video`).
    """
    import av

    path = Path(path)
    if not path.is_file():
        raise VideoError(f"{path}: video file missing")
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            stream.thread_count = 1
            frames = [f.to_ndarray(format="rgb24") for f in container.decode(stream)]
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise VideoError(f"{path}: unreadable video: {exc}") from exc
    if expected_frames is not None and len(frames) != expected_frames:
        raise VideoError(f"{path}: {len(frames)} frames decoded, {expected_frames} expected (truncated?)")
    if not frames:
        raise VideoError(f"{path}: no frames")
    out = np.stack(frames)
    if size is not None:
        out = out[:, : size[0], : size[1]]
    return out


def video_frame_count(path: str | Path) -> int:
    """Number of frames the container says its video stream holds (no decoding)."""
    import av

    try:
        with av.open(str(path)) as container:
            return int(container.streams.video[0].frames)
    except (av.error.FFmpegError, IndexError, OSError) as exc:
        raise VideoError(f"{path}: unreadable video: {exc}") from exc
