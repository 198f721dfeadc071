"""The picture the back row sees: every scenario, view and instrument in a real Chromium, measured from the rendered
SVG of each plotly figure (one page.evaluate per page): no two text elements overlap, no text below the frame's
minimum, integer axes ticked at integers; in presentation mode the figure (slider included) ends inside the
viewport without scrolling and the largest plane or 3-D scene takes at least 60 % of its height.

One live server on a prebuilt disk cache (every scenario's runs, untrained weights: only the pictures matter), one
browser; views are visited through the link's ``view=`` flag, not by clicks.
"""

import os
import sys

import pytest
from tiny import LiveServer

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CHROMIUM = "/usr/bin/chromium"
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PLANE_VIEWS = {"characteristics", "lifted", "velocity", "decision", "side_by_side", "stability", "adjoint"}

# every plotly figure of the page: its text boxes, the smallest font, integer axes' ticks, its box and its largest
# plane (the plot area of an equal-aspect axis pair) or 3-D scene
MEASURE = """() => {
  const out = [];
  for (const gd of document.querySelectorAll('.js-plotly-plot')) {
    const fl = gd._fullLayout; if (!fl) continue;
    const texts = [];
    for (const t of gd.querySelectorAll('svg text')) {
      if (t.closest('.hoverlayer') || !t.textContent.trim()) continue;
      const cs = getComputedStyle(t);
      if (cs.display === 'none' || cs.visibility === 'hidden' || cs.opacity === '0') continue;
      const r = t.getBoundingClientRect();
      if (r.width < 1 || r.height < 1) continue;
      texts.push({s: t.textContent.trim(), x0: r.left, y0: r.top, x1: r.right, y1: r.bottom,
                  size: parseFloat(t.style.fontSize || cs.fontSize)});
    }
    const overlaps = [];
    for (let i = 0; i < texts.length; i++) for (let j = i + 1; j < texts.length; j++) {
      const a = texts[i], b = texts[j];
      const w = Math.min(a.x1, b.x1) - Math.max(a.x0, b.x0), h = Math.min(a.y1, b.y1) - Math.max(a.y0, b.y0);
      if (w > 2 && h > 2 && (a.s !== b.s || Math.abs(a.x0 - b.x0) > 1)) overlaps.push([a.s, b.s]);
    }
    const ints = [];
    for (const k of Object.keys(fl)) {
      const ax = fl[k];
      if (!/^[xy]axis/.test(k) || !ax || !ax._vals) continue;
      const title = (ax.title && ax.title.text) || '';
      if (title !== 'block k' && title !== 'k') continue;
      for (const v of ax._vals) if (Math.abs(v.x - Math.round(v.x)) > 1e-9) ints.push([title, v.x]);
    }
    let plane = 0;
    for (const k of Object.keys(fl)) {
      const ax = fl[k];
      if (/^yaxis/.test(k) && ax && ax.scaleanchor && ax._length) plane = Math.max(plane, ax._length);
      if (/^scene/.test(k) && ax && ax.domain) plane = Math.max(plane, (ax.domain.y[1] - ax.domain.y[0]) * fl.height);
    }
    const box = gd.getBoundingClientRect();
    out.push({title: (fl.title && fl.title.text) || '', n: texts.length, overlaps: overlaps.slice(0, 5),
              min: Math.min(...texts.map(t => t.size)),
              small: texts.filter(t => t.size < 11.5).map(t => t.s).slice(0, 3),
              ints, plane, top: box.top, bottom: box.bottom});
  }
  return {figs: out, scroll: document.scrollingElement.scrollTop, vh: innerHeight,
          errors: document.querySelectorAll("[data-testid='stException']").length};
}"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if not os.path.exists(CHROMIUM):
        msg = f"BROWSER TESTS NOT RUN: {CHROMIUM} is missing"
        print("\n" + msg, file=sys.stderr)
        pytest.skip(msg)
    from flowviz.core.data import make_dataset
    from flowviz.core.model import build_model
    from flowviz.core.presets import preset_configs, preset_names
    from flowviz.runfiles import cache
    from flowviz.serve.settings import Settings
    from flowviz.training.train import run_metrics

    d = tmp_path_factory.mktemp("prebuilt")
    metrics = run_metrics(train=(0.7, 0.5), test=(0.7, 0.5), steps=1)
    history = [
        dict(step=s, loss=0.7 / s, test_loss=0.75 / s, train_accuracy=1 - 0.5 / s, test_accuracy=1 - 0.55 / s)
        for s in (1, 2, 4)
    ]  # a few rows: the learning curves have something to draw
    for name in preset_names():
        for c in preset_configs(name):
            cache.store(
                c, build_model(c, make_dataset(c).n_classes), history, metrics, settings=Settings(cache_dir=str(d))
            )
    with LiveServer({"FLOWVIZ_CACHE_DIR": str(d)}, wait_s=180) as url:  # it warms 16 prebuilt runs
        yield url


def _visits():
    """(scenario, view or None, sizes, present): every view and instrument of the plain run in presentation
    mode at 1280 x 720 (the lifted space and the side-by-side pair are the landing views of rings_lift and
    deep_vs_shallow), and every scenario's landing view at 1280 x 720 and 1920 x 1080 in presentation mode (one
    page, resized) and at 1920 x 1080 without it."""
    from flowviz.core.presets import preset_names

    views = [
        "decision",
        "transport",
        "velocity",
        "diagnostics",
        "probe",
        "stability",
        "volume",
        "grid_solver",
        "adjoint",
        "sweep",
        "dictionary",
    ]
    out = [("moons", v, [(1280, 720)], True) for v in views]
    for name in preset_names():
        out += [(name, None, [(1280, 720), (1920, 1080)], True), (name, None, [(1920, 1080)], False)]
    return out


def _check(page, url, scenario, view, sizes, present, kind):
    out = []
    for i, (w, h) in enumerate(sizes):
        page.set_viewport_size({"width": w, "height": h})
        if i == 0:
            link = f"{url}/?scenario={scenario}&present={int(present)}" + (f"&view={view}" if view else "")
            page.goto(link)
            page.wait_for_function("() => document.body.innerText.includes('done')", timeout=90_000)
            if kind not in ("sweep", "dictionary"):
                page.wait_for_selector(".js-plotly-plot .main-svg", timeout=90_000)
        page.wait_for_timeout(1200)  # plotly's second layout pass (automargin), or its relayout after a resize
        out += _measured(page, scenario, view, w, h, present, kind)
    return out


def _measured(page, scenario, view, w, h, present, kind):
    m = page.evaluate(MEASURE)
    where = f"{scenario} view={view} {w}x{h} present={present}"
    problems = []
    if m["errors"]:
        problems.append("an exception on the page")
    minimum = 16 if present else 12
    for i, f in enumerate(m["figs"]):
        name = f"figure {i} ({f['title'][:50]!r})"
        if f["overlaps"]:
            problems.append(f"{name}: text overlaps {f['overlaps']}")
        if f["n"] and f["min"] < minimum - 0.5:
            problems.append(f"{name}: text of {f['min']} px < {minimum} ({f['small']})")
        if f["ints"]:
            problems.append(f"{name}: integer axes with ticks {f['ints'][:3]}")
    if present and m["figs"] and view not in ("sweep", "dictionary"):
        first = m["figs"][0]
        if first["bottom"] > m["vh"] + 1 or m["scroll"]:
            problems.append(f"the first figure ends at {first['bottom']:.0f} px of {m['vh']} (scroll {m['scroll']})")
        shown = [f for f in m["figs"] if f["top"] < m["vh"]]
        if kind in PLANE_VIEWS and max(f["plane"] for f in shown) < 0.6 * m["vh"] and first["plane"]:
            problems.append(f"the largest plane is {max(f['plane'] for f in shown):.0f} px < 60 % of {m['vh']}")
    return [f"{where}: {p}" for p in problems]


@pytest.mark.xfail(
    strict=False,
    reason=(
        "moons' Decision surface legend wraps onto its title at 1280 x 720, and the merged page's "
        "training-step row is not yet in the layout's budget (open in issue 25)"
    ),
)
def test_every_scenario_view_and_instrument_is_legible_in_its_frame(server, browser):
    from flowviz.core.presets import preset_info

    page = browser.new_page(viewport={"width": 1280, "height": 720})
    problems = []
    for scenario, view, sizes, present in _visits():
        landing = view is None
        if landing:  # the landing view: the scenario's own, checked as a plane view where it is one
            v, ins = preset_info(scenario)["view"], preset_info(scenario)["instrument"]
            from flowviz.ui.links import view_of

            view = view_of(v, ins) if v != "Instruments" or ins else "instruments"
        problems += _check(page, server, scenario, None if landing else view, sizes, present, view)
    page.close()
    assert not problems, "\n".join(problems)
