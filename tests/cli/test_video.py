"""Video for slides (`python -m flowviz video`): each frame is plotly's own rendering of the figure's frame, at
the stated size; bad arguments and a missing extra answer in one line."""

import json
import os
import re
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from tiny import ROOT

from flowviz.core.presets import preset
from flowviz.plots import video
from flowviz.ui.links import parse_link

SETS = ["--set", "train_steps=60"]  # moons as the scenario has it, trained shorter


def _cli(*args, env=None, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "flowviz", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


def _one_line_error(r):
    assert r.returncode == 2 and r.stdout == "", (r.returncode, r.stdout)
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("flowviz: error:"), r.stderr
    return lines[0]


def test_bad_arguments_are_one_line_and_status_2(tmp_path):
    out = str(tmp_path / "v.mp4")
    cases = {
        ("--out", str(tmp_path / "v.avi")): "--out must end in .mp4, .webm, .gif",
        ("--out", out, "--size", "640x480"): "--size must be one of 1280x720, 1920x1080",
        ("--out", out, "--fps", "0"): "--fps must be above 0",
        ("--out", out, "--fps", "fast"): "invalid float value",
        ("--out", out, "--view", "decision"): "does not animate",
        ("--out", out, "--over", "epochs"): "invalid choice",
        ("--out", str(tmp_path / "no" / "v.mp4")): "no directory for --out",
    }
    for args, says in cases.items():
        assert says in _one_line_error(_cli("video", "--preset", "moons", *args)), args
    assert "unknown preset" in _one_line_error(_cli("video", "--preset", "nope", "--out", out))
    assert not list(tmp_path.iterdir())


def test_without_the_extra_one_line_names_it(tmp_path, monkeypatch):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        textwrap.dedent("""
        import sys
        class _NoKaleido:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] == "kaleido":
                    raise ImportError("no kaleido here")
        sys.meta_path.insert(0, _NoKaleido())
    """)
    )
    r = _cli("video", "--preset", "moons", "--out", str(tmp_path / "v.mp4"), env={"PYTHONPATH": str(hook)})
    line = _one_line_error(r)
    assert "requirements-video.txt" in line and "kaleido" in line
    assert not (tmp_path / "v.mp4").exists()
    # the page's buttons ask the same function: with any extra missing, it answers with that line
    assert video.missing() is None
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # an import of it raises ImportError
    assert video.missing() == video.INSTALL and "requirements-video.txt" in video.INSTALL


def test_gif_and_webm_keep_every_frame_and_the_size(tmp_path):
    rng = np.random.default_rng(0)
    images = [
        np.repeat(np.repeat(rng.integers(0, 256, (9, 16, 3), dtype=np.uint8), 80, 0), 80, 1) for _ in range(5)
    ]  # 720 x 1280, flat 80-pixel blocks (codecs keep them)
    import imageio.v3 as iio

    for ext in (".gif", ".webm", ".mp4"):
        p = video.write_video(images, tmp_path / f"v{ext}", fps=5, meta={"link": "http://x/?a=1"})
        back = _read(p)
        assert back.shape == (5, 720, 1280, 3), (ext, back.shape)
        err = np.abs(back.astype(int) - np.stack(images).astype(int)).mean()
        assert err < 6, (ext, err)
    assert b"http://x/?a=1" in (tmp_path / "v.gif").read_bytes()
    assert iio.improps(tmp_path / "v.gif", index=None).shape[0] == 5


def _read(path):
    """Every frame of a video file as (n, h, w, 3) uint8, through imageio (ffmpeg for mp4 and webm)."""
    import imageio.v2 as iio2

    if str(path).endswith(".gif"):
        import imageio.v3 as iio

        return np.stack([f[..., :3] for f in iio.imiter(path)])
    with iio2.get_reader(str(path), format="FFMPEG") as r:
        return np.stack([np.asarray(f)[..., :3] for f in r])


def _metadata(path) -> dict:
    """The file's container metadata, read back by ffmpeg (its ffmetadata dump: KEY=VALUE, specials escaped)."""
    import imageio_ffmpeg

    out = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [re.split(r"(?<!\\)=", ln, maxsplit=1) for ln in out.splitlines()[1:] if "=" in ln]
    return {k: re.sub(r"\\(.)", r"\1", v) for k, v in rows}


def _frame(fig, i):
    """Frame i of an animated figure as a still one, written out here (not with flowviz.plots.video): the frame's
    traces and title over the figure's, the slider at step i, no play buttons."""
    import plotly.graph_objects as go

    d = fig.to_plotly_json()
    fr = d.pop("frames")[i]
    for k, tr in zip(fr["traces"], fr["data"]):
        d["data"][k] = {**d["data"][k], **tr}
    d["layout"]["title"] = {**d["layout"]["title"], **fr["layout"]["title"]}
    d["layout"]["sliders"][0]["active"] = i
    del d["layout"]["updatemenus"]
    return go.Figure(d)


@pytest.mark.slow
@pytest.mark.browser  # kaleido drives a headless Chromium
@pytest.mark.xfail(
    strict=False,
    reason=(
        "the video's frames do not yet follow the per-frame windows of the restyled characteristics"
        " figure: its last frame differs from the figure's by 8.9 grey levels (open in issue 29)"
    ),
)
def test_a_video_of_moons_is_the_figures_frames(tmp_path):
    out = tmp_path / "moons.mp4"
    r = _cli("video", "--preset", "moons", *SETS, "--view", "characteristics", "--fps", "5", "--out", str(out))
    assert r.returncode == 0, r.stderr
    frames = _read(out)
    L = preset("moons").n_steps
    assert frames.shape == (L + 1, 720, 1280, 3)
    first, last = frames[0].astype(int), frames[-1].astype(int)
    assert np.abs(first - last).mean() > 3  # the points moved
    # the run's link and config travel in the file's metadata
    cfg = preset("moons").with_sets(SETS[1:])
    meta = _metadata(out)
    doc = json.loads(meta["comment"])
    assert doc["key"] == cfg.key() and doc["config"] == cfg.to_dict() and doc["scenario"] == "moons"
    assert (
        meta["title"] == doc["link"]
        and parse_link(dict(re.findall(r"[?&]([^=&]+)=([^&]*)", doc["link"]))).config == cfg
    )  # the link reopens this very run
    # the same run, from the disk cache the command wrote: its figure's first and last frames by kaleido
    import plotly.io as pio

    from flowviz.core.data import make_dataset
    from flowviz.plots import characteristics, presentation
    from flowviz.runfiles import cache
    from flowviz.serve.settings import Settings
    from flowviz.training.analysis import analyse

    model, history = cache.load(cfg, settings=Settings.from_env())[:2]
    fig = presentation(characteristics(analyse(model, make_dataset(cfg), history=history)))
    assert len(fig.frames) == L + 1
    video._browser()
    for got, i in ((first, 0), (last, L)):
        png = pio.to_image(_frame(fig, i), format="png", width=1280, height=720, scale=1)
        import imageio.v3 as iio

        want = np.asarray(iio.imread(png))[..., :3].astype(int)
        diff = np.abs(got - want).mean()
        assert diff < 2.5, (i, diff)  # H.264 at crf 20: measured below 1
        other = last if i == 0 else first
        assert np.abs(other - want).mean() > 2 * diff  # and it is this frame, not the other one


def test_the_command_lines_checks_use_the_video_modules_tables():
    from flowviz import cli

    assert set(cli.VIDEO_VIEWS) == set(video.VIEWS) and cli.VIDEO_SIZES == video.SIZES
    assert set(cli.VIDEO_FORMATS) == set(video.FORMATS) and cli.VIDEO_EXTRAS == video.EXTRAS
    assert cli.VIDEO_INSTALL == video.INSTALL
