"""Video for slides (`python -m flowviz video`): each frame is plotly's own rendering of the figure's frame, at
the stated size; bad arguments and a missing extra answer in one line."""

import base64
import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import plotly
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


@pytest.mark.slow  # VP9 at 1280 x 720
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


PLOTLY_JS = Path(plotly.__file__).parent / "package_data" / "plotly.min.js"
# frame i of an animated figure as plotly.js itself draws it: the figure at the video's size, its play buttons
# removed, Plotly.animate to that frame (no transition), then plotly's own exporter (toImage) in the same page
_ANIMATE = """async ([fig, names, w, h]) => {
    const gd = document.getElementById('g');
    Plotly.purge(gd);
    gd.style.width = w + 'px';
    gd.style.height = h + 'px';
    await Plotly.newPlot(gd, fig.data, fig.layout);
    await Plotly.addFrames(gd, fig.frames);
    const out = [];
    for (const name of names) {
        await Plotly.animate(gd, [name], {mode: 'immediate', frame: {duration: 0, redraw: true},
                                          transition: {duration: 0}});
        out.push(await Plotly.toImage(gd, {format: 'png', width: w, height: h}));
    }
    return out;
}"""


@pytest.fixture(scope="module")
def plotly_page():
    """A Chromium page (every request blocked) with plotly.js loaded: ``draw(fig, frames, size)`` gives the
    frames as plotly.js animates to them, (h, w, 3) uint8 each."""
    import imageio.v3 as iio
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        page = browser.new_page()
        page.route("**/*", lambda route: route.abort())
        page.set_content('<body style="margin:0"><div id="g"></div></body>')
        page.add_script_tag(path=str(PLOTLY_JS))

        def draw(fig, frames, size):
            d = json.loads(fig.to_json())
            d["layout"].pop("updatemenus", None)
            d["layout"].update(width=size[0], height=size[1], autosize=False)
            names = [d["frames"][i]["name"] for i in frames]
            urls = page.evaluate(_ANIMATE, [d, names, *size])
            return [np.asarray(iio.imread(base64.b64decode(u.split(",", 1)[1])))[..., :3] for u in urls]

        try:
            yield draw
        finally:
            browser.close()


def _is_this_frame(got, want, other, tol=2.5):
    """A decoded video frame ``got`` matches plotly's frame ``want`` (H.264 at crf 20: measured 1.1-1.2 grey
    levels mean), and is far nearer to it than to ``other`` (another frame of the same figure)."""
    diff = np.abs(got.astype(int) - want.astype(int)).mean()
    far = np.abs(got.astype(int) - other.astype(int)).mean()
    print(f"video frame against plotly's: {diff:.2f} grey levels; against the other frame: {far:.2f}")
    assert diff < tol, diff
    assert far > 2 * diff, (far, diff)


@pytest.mark.slow
@pytest.mark.browser  # kaleido drives a headless Chromium, and plotly.js draws the reference in another
def test_a_video_of_moons_is_the_figures_frames(tmp_path, plotly_page):
    out = tmp_path / "moons.mp4"
    r = _cli("video", "--preset", "moons", *SETS, "--view", "characteristics", "--fps", "5", "--out", str(out))
    assert r.returncode == 0, r.stderr
    frames = _read(out)
    L = preset("moons").n_steps
    assert frames.shape == (L + 1, 720, 1280, 3)
    assert f"{L + 1} frames at 1280x720" in r.stderr
    # the size the page states before it makes this file (bench/video.py measures the constants)
    stated = video.estimate(L + 1, (1280, 720), 5, ".mp4").bytes
    assert 0.5 < stated / out.stat().st_size < 2, (stated, out.stat().st_size)
    first, last = frames[0], frames[-1]
    assert np.abs(first.astype(int) - last.astype(int)).mean() > 3  # the points moved
    # the run's link and config travel in the file's metadata
    cfg = preset("moons").with_sets(SETS[1:])
    meta = _metadata(out)
    doc = json.loads(meta["comment"])
    assert doc["key"] == cfg.key() and doc["config"] == cfg.to_dict() and doc["scenario"] == "moons"
    assert (
        meta["title"] == doc["link"]
        and parse_link(dict(re.findall(r"[?&]([^=&]+)=([^&]*)", doc["link"]))).config == cfg
    )  # the link reopens this very run
    # the same run, from the disk cache the command wrote: its figure at frames 0 and L as plotly.js draws them
    # (each frame has its own window: the frame's axis ranges are part of what it shows)
    from flowviz.core.data import make_dataset
    from flowviz.plots import characteristics, presentation
    from flowviz.runfiles import cache
    from flowviz.serve.settings import Settings
    from flowviz.training.analysis import analyse

    model, history = cache.load(cfg, settings=Settings.from_env())[:2]
    fig = presentation(characteristics(analyse(model, make_dataset(cfg), history=history)))
    assert len(fig.frames) == L + 1 and fig.frames[0].layout.xaxis.range != fig.frames[L].layout.xaxis.range
    want = plotly_page(fig, [0, L], (1280, 720))
    _is_this_frame(first, want[0], want[1])
    _is_this_frame(last, want[1], want[0])
    # before encoding, the renderer's frames are plotly's own, pixel for pixel (measured: identical)
    raw = video.render_frames(fig, (1280, 720), frames=[0, L])
    for got, ref in zip(raw, want):
        assert got.shape == ref.shape and (got != ref).any(-1).mean() < 1e-3


@pytest.mark.slow
@pytest.mark.browser
def test_a_video_over_training_is_the_decision_function_at_each_checkpoint(tmp_path, plotly_page):
    import flowviz
    from flowviz.plots import presentation
    from flowviz.plots.pack import training_figure
    from flowviz.training.analysis import analyse
    from flowviz.training.packdata import training_frames

    changes = ["n_samples=200", "n_steps=4", "width=8", "train_steps=12", "lr=0.05"]
    sets = [a for kv in changes for a in ("--set", kv)]
    out = tmp_path / "training.mp4"
    r = _cli("video", "--preset", "moons", *sets, "--over", "training", "--fps", "6", "--out", str(out))
    assert r.returncode == 0, r.stderr
    # the same run trained here (seeded: the command's run, step for step), with the checkpoints it keeps
    cfg = preset("moons").with_sets(changes)
    run = flowviz.train(cfg)
    assert run.checkpoints == list(range(13))  # every step is kept at this size
    frames = _read(out)
    n = len(run.checkpoints)
    assert frames.shape == (n, 720, 1280, 3) and f"{n} frames at 1280x720" in r.stderr
    assert json.loads(_metadata(out)["comment"])["config"] == cfg.to_dict()
    first, last = frames[0], frames[-1]
    assert np.abs(first.astype(int) - last.astype(int)).mean() > 3  # the decision function changed
    tf = training_frames(run, analyse(run.model, run.data, history=run.history).extent)
    assert tf.steps.tolist() == run.checkpoints
    fig = presentation(training_figure(tf, run.data))
    want = plotly_page(fig, [0, n - 1], (1280, 720))
    _is_this_frame(first, want[0], want[1])  # step 0: the untrained network
    _is_this_frame(last, want[1], want[0])  # the last checkpoint: the trained one


def test_the_command_lines_checks_use_the_video_modules_tables():
    from flowviz import cli

    assert set(cli.VIDEO_VIEWS) == set(video.VIEWS) and cli.VIDEO_SIZES == video.SIZES
    assert set(cli.VIDEO_FORMATS) == set(video.FORMATS) and cli.VIDEO_EXTRAS == video.EXTRAS
    assert cli.VIDEO_INSTALL == video.INSTALL


def _video_page():
    """The page's video controls under two animated figures and a still one, for a tiny finished run."""
    from types import SimpleNamespace

    import streamlit as st
    from tiny import TINY

    import flowviz
    from flowviz import plots
    from flowviz.serve.runs.run import Run
    from flowviz.ui import packs

    @st.cache_resource
    def finished():
        r = flowviz.train(TINY.replace(seed=5))
        run = Run(r.config, r.data, None, restored=(r.model, r.history, r.metrics))
        return run, run.views()

    run, views = finished()
    packs.video_buttons(
        run, views, [plots.characteristics, plots.decision, plots.velocity], SimpleNamespace(scenario=None)
    )


@pytest.mark.slow
def test_the_pages_video_buttons_say_what_the_file_will_be_before_it_is_made(monkeypatch):
    from streamlit.testing.v1 import AppTest
    from tiny import TINY

    import flowviz
    from flowviz import plots
    from flowviz.serve.runs.run import Run

    r = flowviz.train(TINY.replace(seed=5))
    views = Run(r.config, r.data, None, restored=(r.model, r.history, r.metrics)).views()
    n = {"characteristics": len(plots.characteristics(views).frames), "velocity": len(plots.velocity(views).frames)}
    assert n["characteristics"] == TINY.n_steps + 1

    at = AppTest.from_function(_video_page, default_timeout=120).run()
    assert not at.exception, at.exception
    assert at.selectbox(key="video_size").options == ["1280x720", "1920x1080"]
    assert at.selectbox(key="video_size").value == "1280x720" and at.select_slider(key="video_fps").value == 4

    def shown(size, fps):
        labels = [b.label for b in at.download_button]
        assert labels == [f"Video of this animation (mp4, {size})"] * 2  # the still figure has none
        lines = [c.value for c in at.caption]
        w, h = video.SIZES[size]
        assert lines == [video.estimate(n[v], (w, h), fps, ".mp4").line() for v in ("characteristics", "velocity")]
        return lines

    small = shown("1280x720", 4)
    assert small[0].startswith(f"{n['characteristics']} frames, {n['characteristics'] / 4:.1f} s at 4 fps: about ")
    at.selectbox(key="video_size").set_value("1920x1080")
    at.select_slider(key="video_fps").set_value(8)
    at.run()
    assert not at.exception
    large = shown("1920x1080", 8)
    assert large != small
    # the stated file size follows the pixels: 1920 x 1080 is 2.25 times 1280 x 720
    e_small = video.estimate(n["characteristics"], (1280, 720), 4)
    e_large = video.estimate(n["characteristics"], (1920, 1080), 8)
    assert abs(e_large.bytes / e_small.bytes - 2.25) < 1e-3 and e_large.duration == e_small.duration / 2
    assert e_large.seconds > e_small.seconds

    # without an extra: one line that names what to install, and no controls
    monkeypatch.setitem(sys.modules, "kaleido", None)
    at = AppTest.from_function(_video_page, default_timeout=120).run()
    assert not at.exception
    assert [c.value for c in at.caption] == [video.INSTALL] and "requirements-video.txt" in video.INSTALL
    assert not at.download_button and not at.selectbox


def test_the_video_image_brings_kaleidos_browser_and_the_figures_font():
    """The Docker recipe (read, not built): EXTRAS=video installs chromium where flowviz hands it to kaleido, the
    figures' Arial (Liberation Sans), and the pinned extras; the first as root, before the image's user."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    ins = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    apt = next(i for i in ins if "apt-get install" in i)
    assert apt.startswith('RUN if [ "${EXTRAS}" = "video" ]') and re.search(r"\bchromium fonts-liberation\b", apt)
    pip = next(i for i in ins if i.startswith("RUN pip install --no-deps"))
    assert 'if [ "${EXTRAS}" = "video" ]; then pip install -r requirements-video.txt' in pip
    assert ins.index(apt) < [i.split()[0] for i in ins].index("USER")
    assert "requirements-video.txt" in next(i for i in ins if i.startswith("COPY requirements"))
    assert video.DEBIAN_CHROMIUM == "/usr/bin/chromium"  # where Debian's package puts it
    pins = [ln for ln in (ROOT / "requirements-video.txt").read_text().splitlines() if ln and ln[0] != "#"]
    assert sorted(p.split("==")[0] for p in pins) == ["imageio", "imageio-ffmpeg", "kaleido"]
