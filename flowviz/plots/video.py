"""Video of an animated figure for slides: each of its frames rendered by plotly's own exporter (kaleido, which
drives a Chrome or Chromium) and written by imageio-ffmpeg (mp4, webm) or imageio (gif).

These are optional extras (requirements-video.txt); without them :func:`missing` says what to install. Debian's
``/usr/bin/chromium`` is handed to kaleido (``BROWSER_PATH``) when no other browser was named.
"""

from __future__ import annotations

import copy
import importlib
import io
import json
import os
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from .field import velocity
from .figures import characteristics
from .instruments import adjoint, stability, volume
from .lifted import lifted

__all__ = [
    "VIEWS",
    "EXTRAS",
    "FORMATS",
    "SIZES",
    "INSTALL",
    "missing",
    "frame_count",
    "frame_figure",
    "render_frames",
    "write_video",
    "video_bytes",
    "Estimate",
    "estimate",
]

# the animated views by name: (what the builder takes: the run's views or an instrument's data, the builder)
VIEWS = {
    "characteristics": ("views", characteristics),
    "lifted": ("views", lifted),
    "velocity": ("views", velocity),
    "stability": ("stability", stability),
    "volume": ("volume", volume),
    "adjoint": ("adjoint", adjoint),
}
EXTRAS = ("kaleido", "imageio", "imageio_ffmpeg")
INSTALL = "video needs the optional extras: pip install -r requirements-video.txt (kaleido, imageio, imageio-ffmpeg)"
FORMATS = {".mp4": "video/mp4", ".webm": "video/webm", ".gif": "image/gif"}
SIZES = {"1280x720": (1280, 720), "1920x1080": (1920, 1080)}
DEBIAN_CHROMIUM = "/usr/bin/chromium"
_LOCK = threading.Lock()  # kaleido's sync server is one per process: one video at a time
# what a video costs, measured by bench/video.py on the characteristics of moons on the 2-core box under load
# (bench/README.md): the browser's start, seconds per frame by size, seconds to encode a megapixel of frames and
# file bytes per pixel of a frame, by format. Once this process has made a video, its own pace replaces FRAME_S
# and scales the encoding alike (the machine's speed now).
START_S = 9.0
FRAME_S = {(1280, 720): 2.8, (1920, 1080): 4.1}
ENCODE_S_PER_MPX = {".mp4": 0.4, ".webm": 1.7, ".gif": 1.2}
BYTES_PER_PIXEL = {".mp4": 0.055, ".webm": 0.025, ".gif": 0.18}
_PACE: dict[tuple[int, int], float] = {}


@dataclass(frozen=True)
class Estimate:
    """What a video will be before it is made: its frames, length in seconds at its frame rate, file size in
    bytes and seconds to make it (both approximate)."""

    frames: int
    duration: float
    bytes: int
    seconds: float

    def line(self) -> str:
        """One line for the page: '11 frames, 2.8 s at 4 fps: about 0.6 MB, made in about 15 s'."""
        mb = self.bytes / 1e6
        size = f"{mb:.1f} MB" if mb >= 0.1 else f"{self.bytes / 1e3:.0f} kB"
        return (
            f"{self.frames} frames, {self.duration:.1f} s at {self.frames / self.duration:g} fps: about {size}, "
            f"made in about {max(1, round(self.seconds))} s"
        )


def estimate(frames: int, size: tuple[int, int], fps: float, fmt: str = ".mp4") -> Estimate:
    """The :class:`Estimate` of a video of ``frames`` frames at ``size`` (w, h) and ``fps`` in format ``fmt``."""
    w, h = size
    base = FRAME_S.get(size, FRAME_S[(1280, 720)] * w * h / (1280 * 720))
    per = _PACE.get(size, base)
    encode = frames * w * h / 1e6 * ENCODE_S_PER_MPX[fmt] * per / base
    return Estimate(frames, frames / fps, int(frames * w * h * BYTES_PER_PIXEL[fmt]), START_S + frames * per + encode)


def missing() -> str | None:
    """None when the extras import, else the one line that says what to install."""
    for name in EXTRAS:
        try:
            importlib.import_module(name)
        except ImportError:
            return INSTALL
    return None


def frame_count(fig: go.Figure) -> int:
    """The frames of an animated figure (0 for a still one)."""
    return len(fig.frames or ())


def frame_figure(fig: go.Figure, i: int) -> go.Figure:
    """The still figure that frame ``i`` of ``fig`` shows: its traces and layout changes applied, the slider at
    step i, no play buttons and no frames (what the browser shows after ``Plotly.animate`` to that frame)."""
    d = fig.to_plotly_json()
    frames = d.pop("frames", None) or []
    layout = d.setdefault("layout", {})
    if frames:
        fr = frames[i]
        idx = fr.get("traces", list(range(len(fr.get("data", [])))))
        for k, tr in zip(idx, fr.get("data", [])):
            d["data"][k] = _merge(d["data"][k], tr)
        layout = _merge(layout, fr.get("layout", {}))
        for sl in layout.get("sliders", ()):
            sl["active"] = i
    layout.pop("updatemenus", None)
    d["layout"] = layout
    return go.Figure(d, skip_invalid=True)


def _merge(base: dict, upd: dict) -> dict:
    """``base`` updated by ``upd`` as plotly's animate does: nested dicts merged, other values replaced."""
    out = copy.copy(base)
    for key, val in upd.items():
        out[key] = _merge(out[key], val) if isinstance(val, dict) and isinstance(out.get(key), dict) else val
    return out


def _browser() -> None:
    if "BROWSER_PATH" not in os.environ and os.path.exists(DEBIAN_CHROMIUM):
        os.environ["BROWSER_PATH"] = DEBIAN_CHROMIUM


def render_frames(fig: go.Figure, size: tuple[int, int], *, frames=None) -> list[np.ndarray]:
    """Each frame (default: all; a still figure is one) as an RGB image (height, width, 3) uint8, by kaleido."""
    import imageio.v3 as iio
    import kaleido
    import plotly.io as pio

    _browser()
    n = frame_count(fig)
    which = list(range(n)) if frames is None and n else list(frames) if frames is not None else [None]
    w, h = size
    with _LOCK:
        started = not kaleido._global_server.is_running()
        if started:  # MathJax off: kaleido's page would fetch it from a CDN (no figure here typesets TeX)
            kaleido.start_sync_server(silence_warnings=True, mathjax=False)
        try:
            out = []
            with warnings.catch_warnings():  # plotly hands its page options over again; the server has its own
                warnings.filterwarnings("ignore", message="The kopts argument is ignored")
                for n, i in enumerate(which):
                    if n == 1:  # the browser is up: the frames after the first give the pace
                        t = time.perf_counter()
                    f = fig if i is None else frame_figure(fig, i)
                    png = pio.to_image(f, format="png", width=w, height=h, scale=1)
                    out.append(np.asarray(iio.imread(io.BytesIO(png)))[..., :3])
            if len(which) > 2:
                _PACE[(w, h)] = (time.perf_counter() - t) / (len(which) - 1)
            return out
        finally:
            if started:
                kaleido.stop_sync_server(silence_warnings=True)


def write_video(images: list[np.ndarray], path, fps: float, *, meta: dict | None = None) -> Path:
    """Write RGB images as ``path`` (.mp4: H.264, .webm: VP9, .gif), ``meta`` (the run's link and config) in the
    file's comment (mp4, webm: container metadata; gif: its comment extension)."""
    path = Path(path)
    ext = path.suffix.lower()
    comment = json.dumps(meta, separators=(",", ":")) if meta else ""
    if ext == ".gif":
        import imageio.v3 as iio

        kw = {"comment": comment.encode()} if comment else {}
        iio.imwrite(path, np.stack(images), extension=".gif", duration=1000.0 / fps, loop=0, **kw)
        return path
    import imageio_ffmpeg

    codec = {".mp4": "libx264", ".webm": "libvpx-vp9"}[ext]
    h, w = images[0].shape[:2]
    params = (
        ["-metadata", f"comment={comment}", "-metadata", f"title={(meta or {}).get('link', '')}"] if comment else []
    )
    if ext == ".webm":
        params += ["-b:v", "0", "-crf", "32", "-row-mt", "1"]
    else:
        params += ["-crf", "20", "-movflags", "+faststart"]
    gen = imageio_ffmpeg.write_frames(
        str(path),
        (w, h),
        fps=fps,
        codec=codec,
        pix_fmt_out="yuv420p",
        macro_block_size=2,
        output_params=params,
        ffmpeg_log_level="error",
    )
    gen.send(None)
    try:
        for im in images:
            gen.send(np.ascontiguousarray(im[..., :3], dtype=np.uint8))
    finally:
        gen.close()
    return path


def video_bytes(fig: go.Figure, fmt: str, size: tuple[int, int], fps: float, *, meta: dict | None = None) -> bytes:
    """The whole animation of ``fig`` as a video file's bytes (``fmt``: .mp4, .webm or .gif)."""
    images = render_frames(fig, size)
    with tempfile.TemporaryDirectory() as d:
        p = write_video(images, Path(d) / f"video{fmt}", fps, meta=meta)
        return p.read_bytes()
