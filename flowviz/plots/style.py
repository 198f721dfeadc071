"""One figure style for a frame: sizes, fonts, line widths, margins, legend, colour bars and slider of every figure.

A frame is where a figure is seen: ``notebook`` (a Jupyter cell), ``page`` (the app at any width) and
``present`` (presentation mode in a 1280 x 720 projector frame; ``present_1080`` for 1920 x 1080). Every figure
of :mod:`flowviz.plots` is built in the ``page`` frame and may be re-styled for another with :func:`apply`.

Placement rules (the same in every frame):

- the title sits at the top of the figure, wrapped to the frame's width, in a top margin reserved for it;
- the legend is horizontal, between the title and the plot area, in a top margin reserved for its rows;
- a colour bar lies right of the plot area, in a right margin reserved for it (one per quantity);
- the frame slider lies below the x axis title, in a bottom margin reserved for it; its labels are thinned
  so that they never touch (the title says the frame);
- no text smaller than the frame's ``min_text`` px.
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, replace

import plotly.graph_objects as go

from .notation import math_text

__all__ = ["Frame", "FRAMES", "frame_of", "apply", "styled", "wrap", "text_width", "int_ticks", "round_for_reading"]


@dataclass(frozen=True)
class Frame:
    """Where a figure is seen: its width (px, what the title and legend wrap to) and height, and the type."""

    name: str
    width: int  # the figure's width in px (the page: a typical main column)
    height: int  # a single-plane figure's height in px
    text: int  # axis titles, legend, subplot titles, annotations, colour-bar titles
    tick: int  # tick labels
    title: int  # the figure's title
    min_text: int  # no text below this
    line: float  # line widths and marker sizes times this
    path_width: float  # a characteristic's line width, px
    path_opacity: float
    grid: str  # grid line colour
    narrowest: int = 0  # the narrowest width it is drawn at, px (the page beside its sidebar); 0: ``width``

    @property
    def char(self) -> float:
        """Mean width of a character of the base font, px (Arial: about half its size)."""
        return 0.5 * self.text


FRAMES = {
    "notebook": Frame("notebook", 900, 620, 14, 13, 18, 12, 1.0, 1.2, 0.35, "#e4e4e4"),
    "page": Frame("page", 1100, 640, 15, 14, 19, 12, 1.0, 1.4, 0.4, "#dddddd", narrowest=820),
    "present": Frame("present", 1240, 640, 18, 16, 20, 16, 1.5, 2.5, 0.6, "#c8c8c8"),
    "present_1080": Frame("present_1080", 1880, 980, 22, 20, 26, 16, 2.0, 3.0, 0.6, "#c8c8c8"),
}


def frame_of(frame: Frame | str | None) -> Frame:
    if isinstance(frame, Frame):
        return frame
    return FRAMES[frame or "page"]


def text_width(text: str, size: float) -> float:
    """Estimated width in px of one line of ``text`` (markup removed) at font ``size``."""
    plain = re.sub(r"<[^>]+>", "", text)
    return 0.5 * size * len(plain)


def wrap(text: str, size: float, width: float) -> str:
    """``text`` with <br> inserted (at ' · ', ', ', ': ' or spaces) so that no line is wider than ``width`` px."""
    lines = []
    for line in text.split("<br>"):
        while text_width(line, size) > width:
            words = line.split(" ")
            cut, acc = 0, ""
            for i, w in enumerate(words):
                nxt = (acc + " " + w) if acc else w
                if text_width(nxt, size) > width and i:
                    break
                acc, cut = nxt, i + 1
            if cut in (0, len(words)):
                break
            lines.append(" ".join(words[:cut]))
            line = " ".join(words[cut:])
        lines.append(line)
    return "<br>".join(lines)


def _lines(text) -> int:
    return 0 if not text else str(text).count("<br>") + 1


def int_ticks(n: int, target: int = 10) -> dict:
    """Axis settings for an integer axis 0 .. n (or 1 .. n): integer ticks only, at most about ``target``."""
    step = max(1, n / max(target, 1))
    mag = 10 ** math.floor(math.log10(step))
    dtick = next(m * mag for m in (1, 2, 5, 10) if m * mag >= step)
    return dict(tickmode="linear", tick0=0, dtick=int(max(1, dtick)), tickformat="d")


def round_for_reading(x: float, digits: int = 2) -> str:
    """A number for a title: ``digits`` significant figures, no exponent between 1e-4 and 1e5 (0.082, not
    8.24e-02); a power of ten written as ×10⁻ⁿ beyond."""
    x = float(x)
    if not math.isfinite(x):
        return str(x)
    if x == 0:
        return "0"
    a = abs(x)
    if 1e-4 <= a < 1e5:
        dec = max(0, digits - 1 - math.floor(math.log10(a)))
        return f"{x:.{dec}f}"
    e = math.floor(math.log10(a))
    sup = str(e).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))
    return f"{x / 10**e:.{max(digits - 1, 0)}f}×10{sup}"


# --------------------------------------------------------------------------------------------- applying
def _axes(layout) -> list:
    return [getattr(layout, k) for k in layout if k.startswith(("xaxis", "yaxis"))] if layout else []


def _scenes(layout) -> list:
    return [getattr(layout, k) for k in layout if k.startswith("scene")]


def _has_colorbar(tr) -> bool:
    if getattr(tr, "showscale", None) is False:
        return False
    if tr.type in ("heatmap", "contour", "histogram2d", "surface"):
        return tr.showscale is not False
    m = getattr(tr, "marker", None)
    return bool(m is not None and getattr(m, "showscale", None))


_NO_LEGEND_BY_DEFAULT = ("heatmap", "contour", "isosurface", "mesh3d", "surface", "histogram2d")


def _in_legend(tr) -> bool:
    if tr.showlegend is False:
        return False
    return tr.showlegend is True or tr.type not in _NO_LEGEND_BY_DEFAULT


def _legend_rows(fig: go.Figure, f: Frame) -> int:
    """Rows a horizontal legend of this figure takes at the frame's width (an estimate with a margin)."""
    names = [tr.name or "trace" for tr in fig.data if _in_legend(tr)]
    if fig.layout.showlegend is False or not names or (fig.layout.showlegend is None and len(names) < 2):
        return 0
    widths = [_entry_width(n, f) for n in names]
    room = (f.narrowest or f.width) - 200  # plotly wraps it at the plot area's width
    if sum(widths) <= room:
        return 1
    return math.ceil(len(widths) / max(1, int(room // max(widths))))  # wrapped: columns of the widest entry


def _legend_width(fig: go.Figure, f: Frame) -> float:
    return sum(_entry_width(tr.name or "trace", f) for tr in fig.data if _in_legend(tr))


def _entry_width(name: str, f: Frame) -> float:
    """A legend entry's width: its widest line, the symbol and the gap."""
    return max(text_width(line, f.text) for line in name.split("<br>")) + 42


def _legend_lines(fig: go.Figure) -> int:
    """Lines of the legend's tallest entry (a long entry is wrapped on two in presentation)."""
    return max((_lines(tr.name) for tr in fig.data if _in_legend(tr)), default=1) or 1  # an unnamed entry: one


def _slider_labels(sl, f: Frame, width: float) -> None:
    steps = list(sl.steps or ())
    if not steps:
        return
    widest = max(text_width(str(s.label or ""), f.tick) for s in steps) + 12
    every = max(1, math.ceil(widest * len(steps) / max(width * (sl.len or 1) - 40, 1)))
    if every > 1:
        for i, s in enumerate(steps):
            if i % every and i != len(steps) - 1:
                s.label = " "
        # the last label and its left neighbour may touch: drop the neighbour
        last_kept = (len(steps) - 1) // every * every
        if 0 < len(steps) - 1 - last_kept < every:
            steps[last_kept].label = " "


def apply(fig: go.Figure, frame: Frame | str | None = "page", *, height: int | None = None) -> go.Figure:
    """Style ``fig`` for ``frame`` in place and return it (see the module's placement rules).

    ``height``: the figure's height in px (default: the one the builder chose, scaled to the frame).
    """
    f = frame_of(frame)
    lay = fig.layout
    if lay.template.to_plotly_json() != _white():  # (setting it copies the whole template: a figure styled twice)
        lay.template = "plotly_white"
    lay.font = dict(size=f.text, family="Arial, Helvetica, sans-serif", color="#222222")
    # the title: wrapped to the frame, its lines counted in every animation frame
    _typeset(fig)
    title = lay.title.text or ""
    fold = wrap if f.name.startswith("present") else (lambda t, *_: t)  # the page's width is the browser's
    title_lines = 0
    if title:
        lay.title.text = fold(title, f.title, f.width - 30)
        title_lines = _lines(lay.title.text)
    for fr in fig.frames or ():
        t = fr.layout.title.text if fr.layout and fr.layout.title else None
        if t:
            fr.layout.title.text = fold(t, f.title, f.width - 30)
            title_lines = max(title_lines, _lines(fr.layout.title.text))
    lay.title.update(
        font=dict(size=f.title),
        x=0.01,
        xanchor="left",
        xref="container",
        yref="container",
        y=1,
        yanchor="top",
        pad=dict(t=8),
    )
    title_h = title_lines * f.title * 1.25 + (3 if title_lines else 0)
    # the legend: horizontal, above the plot area, in its own rows (a builder may give it its own place instead)
    own = isinstance(lay.meta, dict) and lay.meta.get("legend") == "own"
    kept = lay.legend.to_plotly_json() if own else None
    if f.name.startswith("present"):
        for tr in fig.data:  # a long entry on two lines
            if tr.name and text_width(tr.name, f.text) > f.width / 3 and "<br>" not in tr.name:
                tr.name = wrap(tr.name, f.text, f.width / 3)
    rows = 0 if own else _legend_rows(fig, f)
    # one row that fits right of a one-line title shares the title's line (plotly wraps a legend inside the plot
    # area wider than half the figure: only a narrower one)
    lw = _legend_width(fig, f)
    lines = _legend_lines(fig)
    beside = (
        rows == 1
        and lines == 1
        and title_lines <= 1
        and lw < (f.narrowest or f.width) / 2 - 20
        and (
            lw + max((text_width(ln, f.title) for ln in title.split("<br>")), default=0) + 60 < (f.narrowest or f.width)
        )
    )
    legend_h = 0 if beside else rows * (f.text * 1.45 + (lines - 1) * f.text * 1.2) + (4 if rows else 0)
    lay.legend = dict(
        orientation="h",
        yref="container",
        y=1 - (title_h + 2) / _height(fig, f, height),
        yanchor="top",
        xref="paper",
        x=0,
        xanchor="left",
        font=dict(size=f.text),
        bgcolor="rgba(0,0,0,0)",
        itemsizing="constant",
        tracegroupgap=4,
        traceorder="normal",  # one flow of entries: grouped entries would stack in columns and take more rows
    )
    # subplot titles (annotations of plotly's make_subplots) and notes: at least the frame's text size
    sub_h = 0
    for a in lay.annotations or ():
        size = a.font.size if a.font and a.font.size else f.text
        a.font.size = max(f.min_text, min(size, f.tick) if f.name.startswith("present") else size)
        if a.yref == "paper" and a.yanchor == "bottom" and a.showarrow is False and a.xanchor == "center":
            a.yshift = 8  # a subplot's title clear of its top tick label
            if (a.y or 0) >= 0.99:
                sub_h = max(sub_h, (_lines(a.text)) * a.font.size * 1.3 + 8)
    # axes: tick labels and titles at the frame's size, a visible grid, tick labels pushing the margins
    for ax in _axes(lay):
        if ax.exponentformat is None:
            ax.exponentformat = "power"  # 10⁻³, never an SI prefix (750µ)
        if ax.type == "log" and ax.dtick is None and ax.tickvals is None:
            ax.dtick = 1  # one label a decade: the small 2..9 labels between decades crowd and go below the minimum
        ax.tickfont.size = f.tick
        ax.title.font.size = f.text
        ax.automargin = True
        ax.showgrid = True if ax.showgrid is not False else False
        ax.gridcolor = f.grid
        ax.title.standoff = 6
    for sc in _scenes(lay):
        for ax in (sc.xaxis, sc.yaxis, sc.zaxis):
            ax.tickfont.size = f.tick
            ax.title.font.size = f.text + 4
            ax.gridcolor = "#bbbbbb"
    # colour bars: right of the plot area, the frame's sizes
    cb_w = 0
    for tr in fig.data:
        if _has_colorbar(tr):
            cb = tr.colorbar if tr.type != "scatter" and tr.type != "scatter3d" else tr.marker.colorbar
            cb.thickness = 16
            cb.tickfont.size = f.tick
            cb.title.font.size = f.text
            cb.xref = "paper"
            if cb.x is None:
                cb.x = 1.02
            cb.xanchor = "left"
            cb.outlinewidth = 0
            cb_w = max(cb_w, 16 + 10 + text_width("0.55", f.tick) + (f.text * 1.4 if cb.title.side == "right" else 0))
    # lines and markers: thicker in presentation
    if f.line != 1.0:
        for tr in fig.data:
            ln = getattr(tr, "line", None)
            if ln is not None and isinstance(getattr(ln, "width", None), (int, float)):
                ln.width = ln.width * f.line
            mk = getattr(tr, "marker", None)
            if mk is not None and isinstance(getattr(mk, "size", None), (int, float)) and tr.type != "scatter3d":
                mk.size = mk.size * min(f.line, 1.4)
    for tr in fig.data:  # text inside the plot (labels of points, numbers in cells)
        tf = getattr(tr, "textfont", None)
        if tf is not None and tf.size is not None:
            tf.size = max(tf.size, f.min_text)
    # the slider and its buttons
    slider_h = 0
    for sl in lay.sliders or ():
        sl.font = dict(size=f.tick)
        sl.currentvalue.visible = False
        sl.pad = dict(t=8, b=4)
        sl.y, sl.yanchor = 0, "top"
        sl.ticklen = 4
        _slider_labels(sl, f, f.width)
        slider_h = f.tick * 1.3 + 26
    for um in lay.updatemenus or ():
        um.font = dict(size=f.tick)
        um.pad = dict(t=8, r=6)
        um.y, um.yanchor = 0, "top"
    h = _height(fig, f, height)
    lay.height = h
    x_title = f.text * 1.4 if any(ax.title.text for ax in _axes(lay) if ax.plotly_name.startswith("xaxis")) else 0
    top = title_h + legend_h + sub_h + 10
    bottom = f.tick * 1.5 + x_title + 4
    lay.margin = dict(t=int(top), l=int(f.tick * 4), r=int(20 + cb_w), b=int(bottom), autoexpand=True, pad=2)
    if slider_h:
        # the slider hangs below the plot area: push it clear of the x axis title with its pad
        for sl in lay.sliders:
            sl.pad = dict(t=int(x_title + f.tick * 1.2), b=0)
        for um in lay.updatemenus or ():
            um.pad = dict(t=int(x_title + f.tick * 1.2 - 6), r=6)
        lay.margin.b = int(bottom + slider_h)
    # the legend just above the plot area (paper coordinates): it follows the reserved margin exactly
    # pixel-exact whatever height the page stretches the figure to: the legend hangs from the figure's top, the
    # title stands on the plot area's top, above the subplot titles (its pad in px)
    if title_lines:
        # (plotly sets a title's later lines below its first whatever the anchor: lift it by them)
        extra = (title_lines - 1) * f.title * 1.3
        lay.title.update(yref="paper", y=1, yanchor="bottom", pad=dict(b=int(sub_h + 10 + extra), t=0))
    if own:
        lay.legend = kept
        lay.legend.font = dict(size=f.text)
    elif beside:
        lay.legend.update(yref="container", y=1, yanchor="top", xref="paper", x=1, xanchor="right")
    elif rows:
        lay.legend.update(yref="container", y=1, yanchor="top")
    elif not own:
        lay.showlegend = False
    return fig


@functools.cache
def _white() -> dict:
    import plotly.io as pio

    return pio.templates["plotly_white"].to_plotly_json()


def _typeset(fig: go.Figure) -> None:
    """Every title, name and note of the figure in typeset notation (:func:`math_text`)."""
    lay = fig.layout
    lay.title.text = math_text(lay.title.text)
    for fr in fig.frames or ():
        if fr.layout and fr.layout.title and fr.layout.title.text:
            fr.layout.title.text = math_text(fr.layout.title.text)
        for tr in fr.data or ():  # a frame's traces replace the figure's, names included
            if isinstance(tr.name, str):
                tr.name = math_text(tr.name)
    for a in lay.annotations or ():
        a.text = math_text(a.text)
    for ax in _axes(lay):
        ax.title.text = math_text(ax.title.text)
    for sc in _scenes(lay):
        for ax in (sc.xaxis, sc.yaxis, sc.zaxis):
            ax.title.text = math_text(ax.title.text)
    for tr in fig.data:  # legend entries (names) and colour-bar titles
        if isinstance(tr.name, str):
            tr.name = math_text(tr.name)
        if _has_colorbar(tr):
            cb = tr.marker.colorbar if tr.type in ("scatter", "scatter3d") else tr.colorbar
            cb.title.text = math_text(cb.title.text)


def _height(fig, f: Frame, height: int | None) -> int:
    if height is not None:
        return int(height)
    if f.name.startswith("present"):  # presentation fills the frame (the page stretches it to the viewport)
        return f.height
    built = fig.layout.height or FRAMES["page"].height
    return int(round(built * f.height / FRAMES["page"].height))


def with_frame(frame: Frame | str, **changes) -> Frame:
    """A copy of a frame with some sizes changed (e.g. a page of another width)."""
    return replace(frame_of(frame), **changes)


def styled(fn):
    """A figure builder whose figure is styled for the page frame (notebooks and the app alike)."""

    @functools.wraps(fn)
    def build(*args, **kw):
        return apply(fn(*args, **kw), "page")

    return build
