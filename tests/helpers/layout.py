"""The picture the back row sees, measured in a real Chromium from the rendered SVG of each plotly figure (one
page.evaluate per page): no two text elements overlap, no text below the frame's minimum, integer axes ticked at
integers; in presentation mode the figure (slider included) ends inside the viewport without scrolling and the
largest plane or 3-D scene takes at least 60 % of its height. tests/browser/test_browser_layout.py visits the
scenarios with it, on a live server over a prebuilt disk cache (untrained weights: only the pictures matter); views
are visited through the pickers, scenarios through the link."""

from contextlib import contextmanager

from playwright.sync_api import TimeoutError as PlaywrightTimeout
from tiny import LiveServer

from helpers.figures_layout import HISTORY, INSTRUMENT_BOXES, MAIN_WIDTH, SIZES, VIEWPORT

PLANE_VIEWS = {"characteristics", "lifted", "velocity", "decision", "side_by_side", "stability", "adjoint"}

# every plotly figure of the page: its text boxes, the smallest font, integer axes' ticks, its box and its largest
# plane (the plot area of an equal-aspect axis pair) or 3-D scene (helpers/figures_layout.py measures figures drawn
# outside the page with it too)
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
              ints, plane, top: box.top, bottom: box.bottom, width: box.width, height: box.height});
  }
  // the header's status line against Streamlit's menu at the header's right end
  const under = (a, b) => a && b && a.width && b.width && a.left < b.right && b.left < a.right &&
                          a.top < b.bottom && b.top < a.bottom;
  const menu = document.querySelector("[data-testid='stMainMenu']");
  const status = [...document.querySelectorAll('.st-key-fv_status p')].map(p => {
    const r = document.createRange(); r.selectNodeContents(p); return r.getBoundingClientRect(); });
  const menuBox = menu && menu.getBoundingClientRect();
  return {figs: out, scroll: document.scrollingElement.scrollTop, vh: innerHeight,
          errors: document.querySelectorAll("[data-testid='stException']").length,
          menu: status.some(s => under(s, menuBox))};
}"""


# every view of a run and every instrument, by the labels of the page's two pickers (the lifted space and the
# side-by-side pair where the run has them); a view without a figure of its own until asked (the depth sweep) or
# without any (the dictionary) is checked for its text only
VIEW_LABELS = {
    "Characteristics": "characteristics",
    "Lifted space": "lifted",
    "Decision surface": "decision",
    "Transport": "transport",
    "Velocity field": "velocity",
    "Diagnostics": "diagnostics",
    "Depth sweep": "sweep",
    "Dictionary": "dictionary",
    "Side by side": "side_by_side",
}
INSTRUMENT_LABELS = {
    "Probe": "probe",
    "Stability region": "stability",
    "Volume and density": "volume",
    "Grid solver": "grid_solver",
    "Adjoint": "adjoint",
    "Draw points": "draw",
}
# the scenarios whose every view is visited: one with a lift (Lifted space; a compared run's Side by side, figures in
# two columns, is the landing view of four scenarios); test_browser_figures.py measures every figure of every view of
# every scenario in the boxes the page gives them, so these visits add the page around a view (the rows above its
# figure, the figure's box) and the views without a figure. The scenarios whose instruments are visited:
# test_browser_figures.py measures every instrument's figures of every scenario in the boxes the page gives them, so
# this visit adds the page around them
EVERY_VIEW = ("rings_lift",)
EVERY_INSTRUMENT = ("moons",)
# a script run under way: an element of the previous run still shown (stale), or Streamlit's running mark
RUNNING_MARK = (
    "[data-stale='true'], [data-testid='stStatusWidgetRunningIcon'], [data-testid='stStatusWidgetRunningManIcon']"
)
RUNNING = f"() => !!document.querySelector({RUNNING_MARK!r})"
SETTLED = f"""() => !document.querySelector({RUNNING_MARK!r}) &&
  [...document.querySelectorAll('.js-plotly-plot')].every(gd => gd._fullLayout && gd.querySelector('.main-svg'))"""


def _landing(scenario):
    from flowviz.core.presets import preset_info
    from flowviz.ui.links import view_of

    v, ins = preset_info(scenario)["view"], preset_info(scenario)["instrument"]
    return view_of(v, ins) if v != "Instruments" or ins else "instruments"


def settle(page, figure=True):
    """Wait for the page (or the views' fragment) to finish its rerun and plotly its second layout pass."""
    try:  # its rerun seen to begin, or 250 ms (a resize starts none; a short rerun may end unseen)
        page.wait_for_function(RUNNING, timeout=250)
    except PlaywrightTimeout:
        pass
    page.wait_for_function(SETTLED, timeout=120_000)
    if figure:
        page.wait_for_selector(".js-plotly-plot .main-svg", timeout=120_000)
    still(page)  # plotly's automargin pass, or its relayout after a resize
    page.wait_for_function(SETTLED, timeout=120_000)


# every figure's box and plot area: equal in two looks 200 ms apart once plotly has done its passes
BOXES = """() => JSON.stringify([...document.querySelectorAll('.js-plotly-plot')].map(gd => {
  const b = gd.getBoundingClientRect(), s = (gd._fullLayout || {})._size || {};
  return [b.left, b.top, b.width, b.height, s.l, s.t, s.w, s.h];
}))"""


def still(page, timeout_s: float = 5.0):
    """Wait until no figure on the page moves or resizes between two looks 200 ms apart (at most ``timeout_s``)."""
    last = page.evaluate(BOXES)
    for _ in range(int(timeout_s / 0.2)):
        page.wait_for_timeout(200)
        now = page.evaluate(BOXES)
        if now == last:
            return
        last = now


def _pick(page, key, label):
    page.locator(f".st-key-{key} [role='radiogroup'] label").filter(has_text=label).first.click()


def _scenario(page, url, scenario):
    """Every check of one scenario on one page: its landing view at 1280 x 720 and 1920 x 1080 in presentation
    mode, then each view (EVERY_VIEW) and instrument (EVERY_INSTRUMENT) at 1280 x 720; then its landing view at
    1920 x 1080 without presentation mode, and at 1280 x 720 (the figures beside the open sidebar). Problems as
    lines; an exception is one problem, and the next scenario goes on."""
    out, kind = [], _landing(scenario)
    where = f"{scenario} landing"
    try:
        page.set_viewport_size({"width": 1280, "height": 720})
        page.goto(f"{url}/?scenario={scenario}&present=1")
        page.wait_for_function("() => document.body.innerText.includes('done')", timeout=120_000)
        settle(page)
        out += _measured(page, where, 1280, 720, True, kind)
        page.set_viewport_size({"width": 1920, "height": 1080})
        settle(page)
        out += _measured(page, where, 1920, 1080, True, kind)
        page.set_viewport_size({"width": 1280, "height": 720})
        if scenario in EVERY_VIEW or scenario in EVERY_INSTRUMENT:
            labels = page.locator(".st-key-view [role='radiogroup'] label").all_inner_texts()
            for label in [lb.strip() for lb in labels]:
                if scenario not in EVERY_VIEW and label != "Instruments":
                    continue
                where = f"{scenario} view {label!r}"
                if label == "Instruments" and scenario in EVERY_INSTRUMENT:
                    _pick(page, "view", label)
                    settle(page, figure=False)
                    for sub, ins in INSTRUMENT_LABELS.items():
                        where = f"{scenario} instrument {sub!r}"
                        _pick(page, "instrument", sub)
                        settle(page, figure=False)  # (the grid solver of a lifted run is a sentence)
                        out += _measured(page, where, 1280, 720, True, ins)
                    continue
                if label == "Instruments":
                    continue
                v = VIEW_LABELS[label]
                _pick(page, "view", label)
                settle(page, figure=v not in ("sweep", "dictionary"))
                out += _measured(page, where, 1280, 720, True, v)
        where = f"{scenario} landing"
        page.set_viewport_size({"width": 1920, "height": 1080})
        page.goto(f"{url}/?scenario={scenario}&present=0")
        page.wait_for_function("() => document.body.innerText.includes('done')", timeout=120_000)
        settle(page)
        out += _measured(page, where, 1920, 1080, False, kind)
        page.set_viewport_size({"width": 1280, "height": 720})  # a laptop: the figures beside the open sidebar
        settle(page)
        out += _measured(page, where, 1280, 720, False, kind)
    except Exception as e:  # one scenario's failure is named; the others are still checked
        out.append(f"{where}: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    return out


def _measured(page, where, w, h, present, kind):
    m = page.evaluate(MEASURE)
    where = f"{where} {w}x{h} present={int(present)}"
    problems = []
    if m["errors"]:
        problems.append("an exception on the page")
    if m["menu"]:
        problems.append("the status line runs under Streamlit's menu")
    minimum = 16 if present else 12
    for i, f in enumerate(m["figs"]):
        name = f"figure {i} ({f['title'][:50]!r})"
        if f["overlaps"]:
            problems.append(f"{name}: text overlaps {f['overlaps']}")
        if f["n"] and f["min"] < minimum - 0.5:
            problems.append(f"{name}: text of {f['min']} px < {minimum} ({f['small']})")
        if f["ints"]:
            problems.append(f"{name}: integer axes with ticks {f['ints'][:3]}")
    if present and m["figs"] and kind not in ("sweep", "dictionary"):
        first = m["figs"][0]
        if first["bottom"] > m["vh"] + 1 or m["scroll"]:
            problems.append(f"the first figure ends at {first['bottom']:.0f} px of {m['vh']} (scroll {m['scroll']})")
        shown = [f for f in m["figs"] if f["top"] < m["vh"]]
        if kind in PLANE_VIEWS and max(f["plane"] for f in shown) < 0.6 * m["vh"] and first["plane"]:
            problems.append(f"the largest plane is {max(f['plane'] for f in shown):.0f} px < 60 % of {m['vh']}")
    if present and (w, h) == VIEWPORT and kind in VIEW_LABELS.values():  # the boxes test_browser_figures.py draws in
        for i, f in enumerate(m["figs"]):
            if not any(abs(f["width"] - bw) < 0.5 and abs(f["height"] - bh) < 0.5 for bw, bh in SIZES):
                problems.append(f"figure {i} is {f['width']:.1f} x {f['height']:.1f} px, not one of {sorted(SIZES)}")
    if present and (w, h) == VIEWPORT and kind in INSTRUMENT_BOXES:  # and the instruments' boxes
        for i, f in enumerate(m["figs"]):
            if abs(f["width"] - MAIN_WIDTH) >= 0.5 or abs(f["height"] - INSTRUMENT_BOXES[kind]) >= 0.5:
                problems.append(
                    f"figure {i} is {f['width']:.1f} x {f['height']:.1f} px, not {INSTRUMENT_BOXES[kind]} high"
                )
    return [f"{where}: {p}" for p in problems]


@contextmanager
def prebuilt_server(directory, scenarios):
    """A live server whose disk cache holds every run of ``scenarios`` (untrained, a few rows of history)."""
    from flowviz.core.data import make_dataset
    from flowviz.core.model import build_model
    from flowviz.core.presets import preset_configs
    from flowviz.runfiles import cache
    from flowviz.serve.settings import Settings
    from flowviz.training.train import run_metrics

    metrics = run_metrics(train=(0.7, 0.5), test=(0.7, 0.5), steps=1)
    for name in scenarios:
        for c in preset_configs(name):
            model = build_model(c, make_dataset(c).n_classes)
            cache.store(c, model, HISTORY, metrics, settings=Settings(cache_dir=str(directory)))
    with LiveServer({"FLOWVIZ_CACHE_DIR": str(directory)}, wait_s=180) as url:  # it warms the prebuilt runs
        yield url


def check(browser, url, scenarios) -> None:
    """Every check of ``scenarios`` on one page; every problem found is named in the one assertion."""
    page = browser.new_page(viewport={"width": 1280, "height": 720})
    problems = []
    for scenario in scenarios:
        problems += _scenario(page, url, scenario)
    page.close()
    assert not problems, "\n".join(problems)
