"""The lecture pack (`python -m flowviz pack`): self-contained pages that carry their run, and that draw every
view in a Chromium cut off from the network, slider and play included."""

import base64
import gzip
import html
import json
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import plotly.offline
import pytest
from tiny import ROOT, TINY

from flowviz.core.config import Config
from flowviz.core.presets import preset, preset_info
from flowviz.ui.links import parse_link

SCENARIOS = ["moons", "rings_lift"]
# the presets, smaller and trained shorter: the pack is about the pages, not the fit (rings_lift at L = 32 spent
# most of the pack on its adjoint instrument's re-discretised continuous comparison)
CHANGES = ["train_steps=60", "n_samples=300", "n_steps=8"]
SETS = [arg for kv in CHANGES for arg in ("--set", kv)]
SHOTS = Path("/tmp/pack-shots")  # looked at by hand, outside the repository
MAX_BYTES = 8_000_000


def _cli(*args, env=None, timeout=1500):
    return subprocess.run(
        [sys.executable, "-m", "flowviz", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=timeout,
    )


@pytest.fixture(scope="module")
def packdir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pack")
    r = _cli("pack", *sum((["--preset", n] for n in SCENARIOS), []), *SETS, "--out", str(out))
    assert r.returncode == 0, r.stderr
    return out


class _Scripts(HTMLParser):
    """The page's tags that load something: script src, link href, img src, iframe src."""

    def __init__(self):
        super().__init__()
        self.loads, self.links, self.json = [], [], {}
        self._id = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href"):
            if tag in ("script", "link", "img", "iframe") and a.get(key):
                self.loads.append(a[key])
        if tag == "a" and a.get("href"):
            self.links.append(a["href"])
        self._id = a.get("id") if tag == "script" and a.get("type") == "application/json" else None

    def handle_data(self, data):
        if self._id:
            self.json[self._id] = json.loads(data)
            self._id = None


def _parsed(path: Path) -> _Scripts:
    p = _Scripts()
    p.feed(path.read_text())
    return p


def test_bad_arguments_are_one_line_and_status_2(tmp_path):
    for args in (
        ["pack", "--out", str(tmp_path)],
        ["pack", "--preset", "nope", "--out", str(tmp_path)],
        ["pack", "--preset", "moons", "--set", "n_steps=0", "--out", str(tmp_path)],
    ):
        r = _cli(*args)
        assert r.returncode == 2 and r.stdout == "", (args, r.stdout)
        assert len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith("flowviz: error:"), r.stderr
    f = tmp_path / "file"
    f.write_text("")
    r = _cli("pack", "--preset", "moons", "--out", str(f))
    assert r.returncode == 2 and r.stderr.strip() == f"flowviz: error: --out {f} is a file, not a directory"
    assert not list(tmp_path.glob("*.html"))


@pytest.mark.slow
def test_each_page_is_one_file_with_one_plotly_and_its_run(packdir):
    js = plotly.offline.get_plotlyjs()
    for name in SCENARIOS:
        path = packdir / f"{name}.html"
        text = path.read_text()
        size = path.stat().st_size
        print(f"{name}.html: {size / 1e6:.2f} MB")
        assert size <= MAX_BYTES, size
        packed = re.findall(r'<script type="application/gzip;base64" id="flowviz-code">([^<]*)</script>', text)
        code = gzip.decompress(base64.b64decode(packed[0])).decode()
        assert len(packed) == 1 and code.count(js) == 1 and js[:300] not in text  # plotly.js inlined, once
        assert code.count("Plotly.newPlot(") == text.count('class="plotly-graph-div"') >= 10
        p = _parsed(path)
        assert p.loads == [], p.loads  # nothing loaded from anywhere: no CDN, no MathJax
        assert "mathjax" not in text.lower() and "cdn.plot.ly" not in text
        meta = p.json["flowviz-run"]
        want = preset(name).with_sets(CHANGES)
        assert Config.from_dict(meta["config"]) == want and meta["key"] == want.key()
        link = meta["link"]
        assert parse_link(dict(re.findall(r"[?&]([^=&]+)=([^&]*)", link))).config == want  # reopens the run
        assert f'<meta name="flowviz-link" content="{link.replace("&", "&amp;")}">' in text
        assert "Reopen the live run" in text and html.escape(preset_info(name)["title"]) in text
        assert re.search(r"xₖ = xₖ₋₁ \+ sₖ", text)  # the formula, in Unicode
    index = _parsed(packdir / "index.html")
    assert index.loads == [] and index.links == [f"{n}.html" for n in SCENARIOS]
    assert [r["scenario"] for r in index.json["flowviz-pack"]["runs"]] == SCENARIOS


# the sections each page must draw (a .main-svg each), by the run's features
VIEWS_2D = [
    "characteristics",
    "decision-surface",
    "transport",
    "transport-in-space-time",
    "velocity-field",
    "learning-curves",
    "diagnostics",
    "folding",
    "weights",
    "instrument-probe",
    "instrument-stability-region",
    "instrument-volume-and-density",
    "instrument-grid-solver",
    "instrument-adjoint",
]
WANT = {  # the runs are trained by the pack, so they keep checkpoints: the training section closes each page
    "moons": VIEWS_2D + ["training-checkpoints"],
    "rings_lift": ["characteristics", "lifted-space"]
    + [v for v in VIEWS_2D[1:] if v != "instrument-grid-solver"]
    + ["training-checkpoints"],
}


@pytest.mark.slow
@pytest.mark.browser
def test_the_pack_draws_offline_in_chromium(packdir):
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", headless=True)
        try:
            for name in ["index"] + SCENARIOS:
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                requests, errors = [], []
                page.route(
                    "**/*", lambda route: route.continue_() if route.request.url.startswith("file:") else route.abort()
                )
                page.on("request", lambda r: requests.append(r.url))
                page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
                page.on("pageerror", lambda e: errors.append(str(e)))
                page.goto((packdir / f"{name}.html").as_uri())
                if name == "index":
                    assert page.locator("a").count() == len(SCENARIOS)
                    page.screenshot(path=str(SHOTS / "index.png"), full_page=True)
                else:
                    _check_page(page, name)
                assert not errors, errors
                left = [u for u in requests if not u.startswith("file:")]
                assert not left, left  # no request leaves the page
                page.close()
        finally:
            browser.close()


def _check_page(page, name):
    want = WANT[name]
    # the page unpacks its figures' code (DecompressionStream) before their divs exist
    page.wait_for_function(
        "n => document.querySelectorAll('.js-plotly-plot').length >= n", arg=len(want), timeout=60_000
    )
    ids = page.evaluate("() => [...document.querySelectorAll('.js-plotly-plot')].map(d => d.id)")
    assert ids == [f"fig-{v}" for v in want], ids
    page.wait_for_function(
        "n => document.querySelectorAll('.js-plotly-plot .main-svg').length >= n", arg=len(want), timeout=120_000
    )
    drawn = page.evaluate(
        "() => [...document.querySelectorAll('.js-plotly-plot')].filter(d => d.querySelector('.main-svg')).length"
    )
    assert drawn == len(want)
    main = "fig-lifted-space" if name == "rings_lift" else "fig-characteristics"
    title = f"() => document.getElementById('{main}').layout.title.text"
    n_frames = page.evaluate(f"() => document.getElementById('{main}')._transitionData._frames.length")
    L = preset(name).with_sets(CHANGES).n_steps
    assert n_frames == L + 1
    first = page.evaluate(title)
    assert "k = 0" in first
    gd = page.locator(f"#{main}")
    gd.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / f"{name}_k0.png"))
    # the slider: a click at the rail's right end shows the last layer
    rail = gd.locator(".slider-rail-rect").bounding_box()
    page.mouse.click(rail["x"] + rail["width"] - 2, rail["y"] + rail["height"] / 2)
    page.wait_for_function(f"() => ({title})().includes('k = {L},')", timeout=30_000)
    page.screenshot(path=str(SHOTS / f"{name}_k{L}.png"))
    # play: from the first frame the animation moves on by itself
    page.evaluate(
        f"() => Plotly.animate('{main}', ['0'], {{mode: 'immediate', frame: {{duration: 0}}, "
        "transition: {duration: 0}})"
    )
    page.wait_for_function(f"() => ({title})().includes('k = 0,')", timeout=30_000)
    gd.locator(".updatemenu-button").first.click()  # ▶
    page.wait_for_function(f"() => !({title})().includes('k = 0,')", timeout=30_000)
    if name == "moons":
        page.screenshot(path=str(SHOTS / f"{name}_page.png"), full_page=False)
    # every other animated figure of the page: its slider's last step and first step
    animated = page.evaluate(
        "() => [...document.querySelectorAll('.js-plotly-plot')]"
        ".filter(d => (d._transitionData._frames || []).length > 1).map(d => d.id)"
    )
    assert main in animated and "fig-training-checkpoints" in animated, animated
    active = "id => document.getElementById(id).layout.sliders[0].active"
    for fig_id in animated:
        if fig_id == main:
            continue
        fig = page.locator(f"#{fig_id}")
        fig.scroll_into_view_if_needed()
        n = page.evaluate(f"() => document.getElementById('{fig_id}')._transitionData._frames.length")
        rail = fig.locator(".slider-rail-rect").bounding_box()
        page.mouse.click(rail["x"] + rail["width"] - 2, rail["y"] + rail["height"] / 2)
        page.wait_for_function(f"({active})('{fig_id}') === {n - 1}", timeout=30_000)
        page.mouse.click(rail["x"] + 2, rail["y"] + rail["height"] / 2)  # and its first
        page.wait_for_function(f"({active})('{fig_id}') === 0", timeout=30_000)
        # (▶ itself is the main figure's, checked above: every figure has the same play button; under the suite's
        # load a second figure's play moved its slider only after a minute or more, on the same button)
    print(f"{name}: the sliders of {len(animated)} animated figures: {', '.join(animated)}")


def _tiny_run():
    import flowviz

    return flowviz.train(TINY.replace(seed=5))


def test_training_frames_are_the_decision_function_at_each_checkpoint():
    from types import SimpleNamespace

    import numpy as np

    from flowviz.core.model import build_model
    from flowviz.plots.pack import training_figure
    from flowviz.training.analysis import transported_surfaces
    from flowviz.training.packdata import training_frames

    r = _tiny_run()
    extent = (-2.0, 2.0, -2.0, 2.0)
    assert training_frames(SimpleNamespace(**vars(r), checkpoints=[]), extent) is None  # none kept: no section
    start = build_model(r.config, r.data.n_classes).state_dict()
    explicit = SimpleNamespace(
        **vars(r),
        checkpoints=[
            SimpleNamespace(step=r.config.train_steps, state=r.model.state_dict()),
            SimpleNamespace(step=0, state=start),
        ],
    )
    kept = training_frames(r, extent, res=20)  # the run's own checkpoints, through result.at(step)
    assert kept.steps.tolist() == list(r.checkpoints) and kept.steps[0] == 0
    np.testing.assert_array_equal(kept.u[-1], transported_surfaces(r.model, extent, res=20, ks=np.array([0])).u[0])
    tf = training_frames(explicit, extent, res=20)
    want = transported_surfaces(r.model, extent, res=20, ks=np.array([0])).u[0]
    np.testing.assert_array_equal(tf.u[1], want)  # the last checkpoint is the trained net's F = u(0, .)
    assert np.abs(tf.u[0] - tf.u[1]).max() > 0.01
    last = [h for h in r.history if h["step"] == r.config.train_steps]
    assert np.isnan(tf.loss[0]) or tf.loss[0] >= 0
    if last:
        assert tf.loss[1] == np.float32(last[-1]["loss"])
    fig = training_figure(tf, r.data)
    assert [f.name for f in fig.frames] == ["0", str(r.config.train_steps)]


def test_the_pages_button_zips_one_page_and_its_index():
    import io
    import zipfile

    from flowviz.serve.runs.run import Run
    from flowviz.ui.packs import pack_bytes

    r = _tiny_run()
    run = Run(r.config, r.data, None, restored=(r.model, r.history, r.metrics))
    z = zipfile.ZipFile(io.BytesIO(pack_bytes(run, run.views(), None, probe=(0.5, -0.25))))
    name = f"run-{r.config.key()[:10]}.html"
    assert sorted(z.namelist()) == sorted(["index.html", name])
    page = z.read(name).decode()
    p = _Scripts()
    p.feed(page)
    assert p.loads == [] and Config.from_dict(p.json["flowviz-run"]["config"]) == r.config
    assert "x_0 = (0.5, -0.25)" in page  # the page's own probe point
    for section in ("fig-characteristics", "fig-instrument-stability-region", "fig-instrument-adjoint"):
        assert f'id="{section}"' in page
