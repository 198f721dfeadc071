"""The picture the back row sees, figure by figure: every figure of every view and every instrument of every scenario
built in Python as the page builds it in presentation mode (untrained weights, as helpers/layout.py's prebuilt
server has them), drawn in one plain Chromium page, each in a box of exactly the size the page gives it at
1280 x 720, and measured with helpers/layout.py's MEASURE. No server and no Streamlit session: a figure costs a
Plotly.newPlot, not a page's script run.

The sizes are the page's own (assets/present.css): the main column is the viewport less its side paddings of 3.6rem
and 1rem (1206.4 px at 1280), two columns share it with a 1rem gap, and a view's figure is the viewport's height
less the header (--fv-top, 80 px) and the frame row (36 px): 604 px. helpers/layout.py checks these sizes on the
live page wherever it measures a view there. The Instruments view has a line of choices more above its figures
(INSTRUMENT_BOXES), checked there on the instruments it visits.

The page draws a figure at its box's size, or first at the height the style gave it and then stretched to the box
(whether its element has its height yet). The two are the same picture as long as plotly keeps the range of every
equal-aspect plane (it narrows the plane's domain instead): a range it widens at one drawing stays widened at the
next, so its ticks would depend on the page's history. The check asserts that it keeps them.

WebGL is off in the page: a 3-D scene's own text is drawn by WebGL, which MEASURE does not read (on the live page
neither), and its title, legend, slider and domain are the same without it.
"""

from __future__ import annotations

import functools
import inspect
import os
from dataclasses import fields, replace

import numpy as np
import plotly
import plotly.graph_objects as go

from flowviz.core.data import make_dataset
from flowviz.core.model import build_model
from flowviz.core.presets import preset_info
from flowviz.training.analysis import analyse
from flowviz.training.instruments import transport_comparison
from flowviz.training.volume import volume_data

VIEWPORT = (1280, 720)
REM = 16
MAIN_WIDTH = VIEWPORT[0] - (3.6 + 1) * REM  # .block-container's side paddings
COLUMN_WIDTH = (MAIN_WIDTH - REM) / 2  # st.columns(2): a 1rem gap
VIEW_HEIGHT = VIEWPORT[1] - 80 - 36  # --fv-top and the frame row above a view's figure
SIZES = {(MAIN_WIDTH, VIEW_HEIGHT), (COLUMN_WIDTH, VIEW_HEIGHT)}
# an instrument's figures (helpers/layout.py's INSTRUMENT_LABELS), the width of the main column and the view's height
# less the Instruments view's line of choices (30 px), the volume's line of density kinds (50 px more) and the
# drawing plane's line of class and buttons (74 px more): present.css's rules for .st-key-instrument,
# .st-key-volume_density and .st-key-draw_class
INSTRUMENT_HEIGHT = VIEW_HEIGHT - 30
INSTRUMENT_BOXES = {
    "probe": INSTRUMENT_HEIGHT,
    "stability": INSTRUMENT_HEIGHT,
    "volume": INSTRUMENT_HEIGHT - 50,
    "grid_solver": INSTRUMENT_HEIGHT,
    "adjoint": INSTRUMENT_HEIGHT,
    "draw": INSTRUMENT_HEIGHT - 74,
}
# the history a prebuilt run keeps (helpers/layout.py's prebuilt server): a few rows, so that the learning curves
# have something to draw
HISTORY = [
    dict(step=s, loss=0.7 / s, test_loss=0.75 / s, train_accuracy=1 - 0.5 / s, test_accuracy=1 - 0.55 / s)
    for s in (1, 2, 4)
]
# the views' grids, coarser than the page's: every plane's range is set from its box, not from its grid, so the
# text is where it is at the page's resolution
RES = 16
PLOTLY_JS = os.path.join(os.path.dirname(plotly.__file__), "package_data", "plotly.min.js")
NO_WEBGL = """const getContext = HTMLCanvasElement.prototype.getContext;
HTMLCanvasElement.prototype.getContext = function (kind, ...rest) {
  return /webgl/.test(kind) ? null : getContext.call(this, kind, ...rest);
};"""


@functools.cache
def _views(key: str):
    from flowviz.core.config import Config

    config = Config.from_json(key)
    data = make_dataset(config)
    return analyse(build_model(config, data.n_classes), data, history=HISTORY, res=RES)


def views_of(config):
    """The FlowViews of ``config``'s run with untrained weights, as a prebuilt run shows them (one per config:
    scenarios that share a run share its views)."""
    return _views(config.to_json())


def _page_figure(fig):
    """``fig`` as the page shows it (presentation mode), its frames dropped: the page opens at the first, and the
    style reserves room for every frame's title."""
    from flowviz import plots

    fig = plots.presentation(fig)
    fig.frames = ()
    return fig


@functools.cache
def _view_figure(fn, key: str):
    return _page_figure(fn(_views(key)))


def scenario_figures(name: str):
    """(view, figure name, figure, width, height) of every figure of every view of scenario ``name`` as the page
    shows it in presentation mode at 1280 x 720 (flowviz.ui.page's views and side-by-side pair)."""
    from flowviz import plots
    from flowviz.plots.sweep import residual_ratios, side_by_side
    from flowviz.ui.links import compare_changes
    from flowviz.ui.page import LIFTED, SIDE_BY_SIDE, TABS, VIEW_FIGURES

    info = preset_info(name)
    run, cmp = info["config"], info["compare"]
    tabs = TABS[:1] + ([LIFTED] if run.lift > 0 else []) + TABS[1:] + ([SIDE_BY_SIDE] if cmp is not None else [])
    out = [
        (tab, fn.__name__, _view_figure(fn, run.to_json()), MAIN_WIDTH, VIEW_HEIGHT)
        for tab in tabs
        for fn in VIEW_FIGURES.get(tab, ())
    ]
    if cmp is not None:
        v, w = views_of(run), views_of(cmp)
        changes = compare_changes(name)
        titles = (
            ", ".join(f"{k} = {getattr(run, k)}" for k in changes),
            ", ".join(f"{k} = {val}" for k, val in changes.items()),
        )
        if info.get("lead_figure") == "residual_ratios":
            out.append(
                (SIDE_BY_SIDE, "residual_ratios", _page_figure(residual_ratios(v, w, titles)), MAIN_WIDTH, VIEW_HEIGHT)
            )
        out.append((SIDE_BY_SIDE, "side_by_side", _page_figure(side_by_side(v, w, titles)), MAIN_WIDTH, VIEW_HEIGHT))
        for fig_name in info["side_figures"]:  # in two columns
            for side, c in (("left", run), ("right", cmp)):
                fig = _view_figure(plots.FIGURES[fig_name], c.to_json())
                out.append((SIDE_BY_SIDE, f"{fig_name} ({side})", fig, COLUMN_WIDTH, VIEW_HEIGHT))
    return out


# the instruments' data at coarse resolutions: a resolution sets how fine a grid or how many points are drawn, not
# the figure's text, which is placed by the figure's layout. The grid solver runs at GRID_RES points a side and its
# figure is labelled with the page's resolutions (its title and ticks name them); the exact push-forward density's
# figure is the KDE's with its density panel's title (contours carry no text)
GRID_RES = (8, 12, 16)
PAGE_GRID_RES = inspect.signature(transport_comparison).parameters["resolutions"].default


def _continuous(ad) -> dict:
    return dict(continuous=ad.continuous, stiff=ad.stiff)


@functools.cache
def _instruments(key: str) -> dict:
    """Each instrument's data of ``key``'s run with untrained weights as a worker makes it for the page
    (flowviz.training.prepared, the box of the run's views), coarse; the probe at the run's first point."""
    from flowviz.core.config import Config
    from flowviz.training.instruments import adjoint_data, probe_data, stability_data

    config, views = Config.from_json(key), _views(key)
    data, box = views.data, tuple(views.extent)
    model = build_model(config, data.n_classes)
    x0 = tuple(float(f"{a:.4g}") for a in data.x[0])  # as a link's probe= gives it
    out = {
        "stability": stability_data(model, data.x, data.y),
        "volume": volume_data(model, data, extent=box, res=8, max_points=60),
        "adjoint": replace(  # its points as the page's; the continuous comparison on a few of them
            adjoint_data(model, data.x_train, data.y_train),
            **_continuous(adjoint_data(model, data.x_train, data.y_train, max_points=12, with_continuous=True)),
        ),
        "probe": probe_data(model, x0),  # its xs: the probe's path the plane draws
    }
    if model.dim == 2:  # the grid solver works on the plane only
        out["grid"] = replace(transport_comparison(model, box, resolutions=GRID_RES), res=np.asarray(PAGE_GRID_RES))
    return out


_EXACT_TITLE: list[str] = []  # the exact density's panel title: the same in every run, made once


def _exact_volume(vd, kde):
    """The volume figure of the exact push-forward density, as built from ``vd``: ``kde`` (the KDE's, not yet
    presented) with that density's panel title."""
    from flowviz import plots

    if not _EXACT_TITLE:
        _EXACT_TITLE.append(plots.volume(replace(vd, density_kind="exact")).layout.annotations[2].text)
    fig = go.Figure(kde)
    fig.layout.annotations[2].text = _EXACT_TITLE[0]
    return fig


def _instrument_figures(key: str) -> tuple:
    from flowviz import plots
    from flowviz.plots.clickplane import click_plane
    from helpers.layout import INSTRUMENT_LABELS

    views, got = _views(key), _instruments(key)
    s = views.surfaces
    figs = [
        (
            "probe",
            "probe plane",
            click_plane(
                views.extent,
                data=views.data,
                surface=(s.x1, s.x2, s.u[0]),
                probe_path=got["probe"].xs,
                height=470,
                title="Click any point of the plane to probe it",
            ),
        ),
        ("probe", "probe", plots.probe(got["probe"], data_points=None)),
        ("stability", "stability", plots.stability(got["stability"])),
        ("volume", "volume (KDE)", plots.volume(got["volume"])),
    ]
    if "grid" in got:  # (the exact density and the grid solver work on the plane only)
        figs.append(("volume", "volume (exact)", _exact_volume(got["volume"], figs[-1][2])))
        figs.append(("grid_solver", "transport_grid", plots.transport_grid(got["grid"])))
    figs.append(("adjoint", "adjoint", plots.adjoint(got["adjoint"])))
    figs.append(
        (
            "draw",
            "draw plane",
            click_plane(
                views.extent, res=41, height=520, title="Draw your own data (click; box or lasso from the toolbar)"
            ),
        )
    )
    label = {v: k for k, v in INSTRUMENT_LABELS.items()}
    return tuple((label[ins], name, _page_figure(fig), MAIN_WIDTH, INSTRUMENT_BOXES[ins]) for ins, name, fig in figs)


# a config's training settings (flowviz.core.config's "training" fields): an untrained run does not depend on them
TRAINING = ("optimizer", "lr", "train_steps", "batch_size", "weight_decay", "smoothness", "kinetic")
_INSTRUMENT_FIGURES: dict[str, tuple] = {}


def scenario_instruments(name: str):
    """(instrument, figure name, figure, width, height) of every figure of the Instruments view of scenario
    ``name`` as the page shows it in presentation mode at 1280 x 720 (flowviz.ui.views.instruments: the probe's
    plane and figure, the stability region, the volume with each of its densities, the grid solver where the run
    is planar, the adjoint, the drawing plane), each in its box. Scenarios whose runs differ only in their
    training settings share them (untrained, they are one run)."""
    from flowviz.core.config import Config

    config = preset_info(name)["config"]
    untrained = replace(config, **{f.name: f.default for f in fields(Config) if f.name in TRAINING}).to_json()
    if untrained not in _INSTRUMENT_FIGURES:
        _INSTRUMENT_FIGURES[untrained] = _instrument_figures(config.to_json())
    return list(_INSTRUMENT_FIGURES[untrained])


# draw the figures (JSON, width, height), each in a box of its size; wait for plotly's automargin pass; measure them
# all with MEASURE, and name for each the axes of an equal-aspect pair whose given range plotly changed; purge them
DRAW = """async ([figs, measure]) => {
  document.body.innerHTML = '';
  const divs = [], given = [];
  for (const [text, w, h] of figs) {
    const d = document.createElement('div');
    d.style.cssText = `width: ${w}px; height: ${h}px; overflow: hidden`;
    document.body.appendChild(d);
    const f = JSON.parse(text);
    f.layout.width = w;
    f.layout.height = h;
    const ranges = {};
    for (const k of Object.keys(f.layout)) {
      if (/^[xy]axis[0-9]*$/.test(k) && Array.isArray(f.layout[k].range)) ranges[k] = f.layout[k].range.slice();
    }
    await Plotly.newPlot(d, f.data, f.layout, {displaylogo: false});
    divs.push(d);
    given.push(ranges);
  }
  await new Promise(r => setTimeout(r, 300));
  await new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  const m = eval(measure)();
  m.figs.forEach((fig, i) => {
    const fl = divs[i]._fullLayout, axes = Object.keys(fl).filter(k => /^[xy]axis[0-9]*$/.test(k));
    const anchored = new Set(axes.filter(k => fl[k].scaleanchor).flatMap(k => [fl[k]._id, fl[k].scaleanchor]));
    const moved = (k, r) => { const now = divs[i].layout[k].range;
      return Math.abs(now[0] - r[0]) + Math.abs(now[1] - r[1]) > 1e-6 * Math.abs(r[1] - r[0]); };
    fig.widened = Object.entries(given[i]).filter(([k, r]) => anchored.has(fl[k]._id) && moved(k, r)).map(([k]) => k);
  });
  for (const d of divs) Plotly.purge(d);
  return m.figs;
}"""


def blank_page(browser):
    """A Chromium page at 1280 x 720, WebGL off, with plotly.js from the installed plotly package (no network)."""
    page = browser.new_page(viewport={"width": VIEWPORT[0], "height": VIEWPORT[1]})
    page.set_content("<!doctype html><html><head><meta charset='utf-8'></head><body style='margin:0'></body></html>")
    page.add_script_tag(content=NO_WEBGL)
    page.add_script_tag(path=PLOTLY_JS)
    return page


def measure(page, figures, cache: dict | None = None) -> list[dict]:
    """MEASURE's entry for each of ``figures`` ((view, name, figure, width, height)) drawn in its box. ``cache``
    keeps the entries of figures drawn before (scenarios that share a run share figures)."""
    from helpers.layout import MEASURE

    cache = {} if cache is None else cache
    keys = []
    for _, _, fig, w, h in figures:
        if any(tr.type.endswith("gl") for tr in fig.data):
            raise ValueError(f"a WebGL trace in {fig.layout.title.text!r}: this page has no WebGL")
        keys.append((fig.to_json(), w, h))
    todo = list(dict.fromkeys(k for k in keys if k not in cache))
    for k, m in zip(todo, page.evaluate(DRAW, [[list(k) for k in todo], MEASURE]) if todo else ()):
        cache[k] = m
    return [cache[k] for k in keys]


def problems(figures, measured, scenario: str) -> list[str]:
    """Each failed check as a line: an equal-aspect plane whose range plotly changed, text overlaps, text below 16 px,
    integer axes ticked off integers, and for a view of a plane (or 3-D scene) a first figure whose largest plane is
    under 60 % of the viewport's height."""
    from helpers.layout import INSTRUMENT_LABELS, PLANE_VIEWS, VIEW_LABELS

    out, first = [], set()
    for (view, name, _, w, h), f in zip(figures, measured):
        where = f"{scenario} {view!r} {name} ({w:.1f} x {h})"
        if f["widened"]:
            out.append(f"{where}: plotly changed the given range of equal-aspect axes {f['widened']}")
        if f["overlaps"]:
            out.append(f"{where}: text overlaps {f['overlaps']}")
        if f["n"] and f["min"] < 16 - 0.5:
            out.append(f"{where}: text of {f['min']} px < 16 ({f['small']})")
        if f["ints"]:
            out.append(f"{where}: integer axes with ticks {f['ints'][:3]}")
        if view not in first:  # the view's first figure fills the frame; the others lie below it
            first.add(view)
            if (
                {**VIEW_LABELS, **INSTRUMENT_LABELS}[view] in PLANE_VIEWS
                and f["plane"]
                and f["plane"] < 0.6 * VIEWPORT[1]
            ):
                out.append(f"{where}: the largest plane is {f['plane']:.0f} px < 60 % of {VIEWPORT[1]}")
    return out
