"""Figures of a depth / step-size sweep (:class:`flowviz.training.sweep.SweepResult`) and of coarse-to-fine training.

Plain functions from results to Plotly figures, as in ``figures``; ``sweep_html``
writes them all into one self-contained page.
"""

from __future__ import annotations

import html
import math

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..training.analysis import FlowViews
from ..training.lifted import slice_name
from ..training.sweep import CoarseToFine, SweepResult
from .convergence import convergence, slope_guides
from .figures import PALETTE, _equal_axes, _f32, _layout, _note, _segments, _surface_trace, mc_note, point_groups
from .probepath import probe_point, probe_traces
from .style import styled

__all__ = [
    "SWEEP_FIGURES",
    "sweep_metrics",
    "sweep_surfaces",
    "sweep_error",
    "sweep_convergence",
    "sweep_conditions",
    "sweep_transfer",
    "side_by_side",
    "residual_ratios",
    "coarse_to_fine_curve",
    "sweep_html",
]

MEMBERS_LABEL = "error of separately trained members (not an order)"
_LABELS = {
    "n_steps": "steps L",
    "horizon": "horizon T",
    "scheme": "scheme",
    "time_mode": "time dependence",
    "smoothness": "smoothness penalty λ",
}


def _xaxis(s: SweepResult) -> tuple[list, dict]:
    """x values and axis settings: log for L and T, categories for names, linear for lambda (0 allowed)."""
    if s.key in ("n_steps", "horizon"):
        return [float(v) for v in s.values], dict(type="log", title_text=_LABELS[s.key])
    if s.key == "smoothness":
        return [float(v) for v in s.values], dict(title_text=_LABELS[s.key])
    return [str(v) for v in s.values], dict(type="category", title_text=_LABELS[s.key])


def _label(s: SweepResult, v) -> str:
    return {"n_steps": f"L = {v}", "horizon": f"T = {v:g}", "smoothness": f"λ = {v:g}"}.get(s.key, str(v))


@styled
def sweep_metrics(s: SweepResult) -> go.Figure:
    """Train and test accuracy, loss, and wall time per run against the swept key."""
    x, ax = _xaxis(s)
    r = s.records()
    fig = make_subplots(
        rows=1,
        cols=3,
        horizontal_spacing=0.09,
        subplot_titles=("accuracy", "cross-entropy loss", "training wall time per run"),
    )
    for key, name, col, color, dash in (
        ("train_accuracy", "train", 1, PALETTE[0], None),
        ("test_accuracy", "test", 1, PALETTE[1], "dot"),
        ("train_loss", "train loss", 2, PALETTE[0], None),
        ("test_loss", "test loss", 2, PALETTE[1], "dot"),
    ):
        y = [np.nan if m[key] is None else m[key] for m in r]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=_f32(y),
                name=name,
                mode="lines+markers",
                line=dict(color=color, width=3, dash=dash),
                marker=dict(size=9),
            ),
            1,
            col,
        )
    walls = np.array([m["wall_s"] for m in r])
    if s.batched:  # one batch: each member's share, in proportion to its blocks x stages
        work = np.array([m.config.n_steps for m in s.members], dtype=float)
        walls = walls[0] * work / work.sum()
        note = f"one batch of {len(r)}: {r[0]['wall_s']:.2f} s for all"
    else:
        note = "each run alone"
    fig.add_trace(
        go.Scatter(
            x=x,
            y=_f32(walls),
            mode="lines+markers",
            marker=dict(size=9, color=PALETTE[2]),
            line=dict(color=PALETTE[2], width=3),
            name="wall time (s)" + (", share of the batch ∝ L" if s.batched else ""),
        ),
        1,
        3,
    )
    for c in (1, 2, 3):
        fig.update_xaxes(row=1, col=c, **ax)
    fig.update_yaxes(range=[0, 1.02], title_text="accuracy", row=1, col=1)
    fig.update_yaxes(type="log", title_text="loss", row=1, col=2)
    fig.update_yaxes(title_text="seconds", row=1, col=3)
    return _layout(fig, f"Sweep over {_LABELS[s.key]}: accuracy, loss and cost ({note})", height=460)


@styled
def sweep_surfaces(s: SweepResult, res: int = 60) -> go.Figure:
    """Small multiples of the decision function F of every member, on one colour scale."""
    x1, x2, u = s.decision_grids(res)
    n = len(s.members)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        horizontal_spacing=0.03,
        vertical_spacing=0.08,
        subplot_titles=[f"{_label(s, m.value)}: test acc {m.result.metrics['test_accuracy']:.3f}" for m in s.members],
    )
    ds = s.data
    for i in range(n):
        r, c = i // cols + 1, i % cols + 1
        fig.add_trace(_surface_trace(None, u[i], x1, x2, showscale=i == 0), r, c)
        for k in range(ds.n_classes):
            m = ds.y_train == k
            fig.add_trace(
                go.Scattergl(
                    x=_f32(ds.x_train[m, 0]),
                    y=_f32(ds.x_train[m, 1]),
                    mode="markers",
                    marker=dict(color=PALETTE[k], size=3),
                    showlegend=False,
                    hoverinfo="skip",
                ),
                r,
                c,
            )
        fig.update_xaxes(range=[float(x1[0]), float(x1[-1])], showticklabels=False, row=r, col=c)
        fig.update_yaxes(
            range=[float(x2[0]), float(x2[-1])],
            showticklabels=False,
            scaleanchor=f"x{i + 1 if i else ''}",
            row=r,
            col=c,
        )
    for a in fig.layout.annotations:
        a.font = dict(size=15)
    return _layout(fig, "Decision function F = u(0, ·) of each member", height=300 * rows + 70)


@styled
def sweep_error(s: SweepResult) -> go.Figure:
    """|x_L − x(T)| of each member against its own reference, against the step size, log-log, with slope guides.

    Each member is a different, separately trained field (per-step members even change with L), so this curve is
    no order of convergence: that is :func:`sweep_convergence`, on one field.
    """
    h = np.array([m.step_size for m in s.members])
    e = np.array([m.disc_error for m in s.members], dtype=float)
    ok = np.isfinite(e) & (e > 0)
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=_f32(h[ok]),
            y=_f32(e[ok]),
            mode="lines+markers+text",
            name=MEMBERS_LABEL,
            text=[_label(s, m.value) for m, o in zip(s.members, ok) if o],
            textposition="top center",
            marker=dict(size=11, color=PALETTE[0]),
            line=dict(width=3, color=PALETTE[0]),
        )
    )
    if ok.sum() >= 1:
        slope_guides(fig, h[ok], e[ok], None, None)
    fig.update_xaxes(type="log", title_text="step size s = max s_k")
    fig.update_yaxes(type="log", title_text="|x_L − x(T)|, mean over points")
    return _layout(fig, f"Discretisation error against step size: {MEMBERS_LABEL}", height=520)


@styled
def sweep_convergence(s: SweepResult) -> go.Figure:
    """The true order on one field (the deepest member's, re-discretised), or why a sweep has none."""
    if s.convergence is not None:
        fig = convergence(s.convergence)
        if s.convergence_note:  # a line of the title (wrapped to the frame), not a note over the plot
            fig.layout.title.text += f"<br><sup>{s.convergence_note}</sup>"
        return fig
    fig = go.Figure()
    fig.add_annotation(
        text=s.convergence_note or "an order on one field needs a sweep over n_steps",
        showarrow=False,
        x=0.5,
        y=0.5,
        xref="paper",
        yref="paper",
        font=dict(size=16),
    )
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, "Order of convergence on one field", height=260)


@styled
def sweep_conditions(s: SweepResult) -> go.Figure:
    """Section 3.3 against the swept key: mean residual ratio |s_k V_k| / |x| and mean weight drift."""
    x, ax = _xaxis(s)
    ratio = [float(m.residual_ratio.mean()) for m in s.members]
    drift = [float(m.weight_drift.mean()) if len(m.weight_drift) else np.nan for m in s.members]
    fig = make_subplots(
        rows=1,
        cols=2,
        horizontal_spacing=0.12,
        subplot_titles=("residual ratio |s_k V_k| / |x| (mean over k)", "weight drift |θ_k − θ_(k−1)| (mean over k)"),
    )
    fig.add_trace(
        go.Scatter(
            x=x,
            y=_f32(ratio),
            mode="lines+markers",
            name="residual ratio",
            line=dict(color=PALETTE[0], width=3),
            marker=dict(size=9),
        ),
        1,
        1,
    )
    if s.key == "n_steps":
        L = np.array(x)
        fig.add_trace(
            go.Scatter(
                x=_f32(L),
                y=_f32(ratio[0] * L[0] / L),
                mode="lines",
                name="∝ 1/L",
                line=dict(color="#777777", dash="dash"),
            ),
            1,
            1,
        )
        fig.update_yaxes(type="log", row=1, col=1)
    fig.add_trace(
        go.Scatter(
            x=x,
            y=_f32(drift),
            mode="lines+markers",
            name="weight drift",
            line=dict(color=PALETTE[2], width=3),
            marker=dict(size=9),
        ),
        1,
        2,
    )
    for c in (1, 2):
        fig.update_xaxes(row=1, col=c, **ax)
    fig.update_yaxes(title_text="ratio", row=1, col=1)
    fig.update_yaxes(title_text="drift", row=1, col=2)
    return _layout(fig, "Section 3.3: small steps and slowly changing weights", height=460)


@styled
def sweep_transfer(s: SweepResult) -> go.Figure:
    """Depth transfer: accuracy of the model trained at L (rows) evaluated at L' (columns)."""
    t = s.transfer
    if t is None:
        return _note("depth transfer needs a sweep over n_steps", "Depth transfer")
    fig = go.Figure()
    acc = t.accuracy
    text = [["—" if not np.isfinite(v) else f"{v:.3f}" for v in row] for row in acc]
    fig.add_trace(
        go.Heatmap(
            z=_f32(acc),
            x=[str(v) for v in t.evaluated],
            y=[str(v) for v in t.trained],
            text=text,
            texttemplate="%{text}",
            textfont=dict(size=14),
            colorscale="Viridis",
            zmin=0.5,
            zmax=1.0,
            colorbar=dict(title=dict(text="accuracy", side="right")),
        )
    )
    fig.update_xaxes(title_text="evaluated at L′", type="category")
    fig.update_yaxes(title_text="trained at L", type="category", autorange="reversed")
    modes = sorted(set(t.time_modes))
    sub = (
        "per-step weights have no field between blocks: only L′ = L"
        if modes == ["per_step"]
        else "a model that learned a flow survives refinement (look along a row)"
    )
    return _layout(fig, f"Depth transfer ({', '.join(modes)} weights): {sub}", height=120 + 50 * len(t.trained))


def _mc_short(v: FlowViews) -> str:
    """A panel title's note for eps > 0 (one line): the Monte-Carlo paths and the largest standard error."""
    se = float(np.max(v.surfaces.mc_stderr))
    return f"u from M = {v.config.mc_samples} noise paths, s.e. ≤ {se:.3f}"


def _sbs_title(t: float) -> str:
    return f"Side by side at the same time t = {t:.3g} (each panel shows its step nearest t)"


def _nearest_frame(ks_t: np.ndarray, t: float) -> int:
    return int(np.argmin(np.abs(ks_t - t)))


@styled
def side_by_side(
    a: FlowViews, b: FlowViews, titles: tuple[str, str] | None = None, *, probe_paths: tuple | None = None
) -> go.Figure:
    """Two runs' characteristics with one shared slider over t in [0, T]: both panels show the same time.
    With ``probe_paths`` (each run's path of one probe, (L+1, d), or None): each panel marks its run's path,
    starred at the step it shows."""
    views = (a, b)
    paths = tuple(probe_paths) if probe_paths is not None else (None, None)
    titles = titles or tuple(f"L = {v.config.n_steps}, {v.config.scheme}, T = {v.config.horizon:g}" for v in views)
    titles = tuple(
        t + (f" · u on the slice {slice_name(v.config.dim)}; points by their own u(t, x)" if v.config.dim > 2 else "")
        for t, v in zip(titles, views)
    )
    if any(mc_note(v) for v in views):  # a viscous panel says how its surface was estimated, and how well
        titles = tuple(t + (f" · {_mc_short(v)}" if mc_note(v) else "") for t, v in zip(titles, views))
    T = max(float(v.t[-1]) for v in views)
    finer = max(views, key=lambda v: len(v.surfaces.ks))
    ts = np.unique(np.concatenate([finer.surfaces.t, [0.0, T]]))
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.06, subplot_titles=titles)
    shared = (
        min(a.extent[0], b.extent[0]),
        max(a.extent[1], b.extent[1]),
        min(a.extent[2], b.extent[2]),
        max(a.extent[3], b.extent[3]),
    )
    static = []
    per_panel = []  # trace indices that move, per panel

    own = all(v.frame_surfaces is not None and v.windows is not None for v in views)  # per-frame windows

    def surface(v, i):
        s, fs = v.surfaces, v.frame_surfaces
        if own:
            return _surface_trace(v, fs.u[i], fs.x1[i], fs.x2[i], showscale=False)
        return _surface_trace(v, s.u[i], s.x1, s.x2, showscale=False)

    def window(t):
        """The one window both panels show at time t: the union of the two runs' windows of that frame."""
        ws = [v.windows[_nearest_frame(v.surfaces.t, min(t, float(v.t[-1])))] for v in views]
        lo = np.min([[w[0], w[2]] for w in ws], 0)
        hi = np.max([[w[1], w[3]] for w in ws], 0)
        c, half = (lo + hi) / 2, float((hi - lo).max()) / 2
        return [float(c[0] - half), float(c[0] + half)], [float(c[1] - half), float(c[1] + half)]

    def panel_data(v, i, pp):
        ch, s = v.characteristics, v.surfaces
        k = int(s.ks[i])
        C = s.u.shape[-1]
        data = [surface(v, i)]
        groups = point_groups(v, i)[0]
        data += [go.Scatter(x=_f32(ch.x[k, groups[c], 0]), y=_f32(ch.x[k, groups[c], 1])) for c in range(C)]
        return data + ([probe_point(pp, k, full=False)] if pp is not None else [])

    for col, v in enumerate(views, 1):
        ch, s = v.characteristics, v.surfaces
        C = s.u.shape[-1]
        start = len(fig.data)
        fig.add_trace(surface(v, 0), 1, col)
        groups = point_groups(v, 0)[0]
        for c in range(C):
            fig.add_trace(
                go.Scatter(
                    x=_f32(ch.x[0, groups[c], 0]),
                    y=_f32(ch.x[0, groups[c], 1]),
                    mode="markers",
                    marker=dict(color=PALETTE[c], size=7, line=dict(color="white", width=0.5)),
                    name=f"class {c}",
                    showlegend=col == 1,
                    legendgroup=str(c),
                ),
                1,
                col,
            )
        per_panel.append(list(range(start, len(fig.data))))
        pp = paths[col - 1]
        if pp is not None:  # the path stays; its star moves with the frames
            for tr in probe_traces(pp, int(s.ks[0]), legend=col == 1 or paths[0] is None):
                fig.add_trace(tr, 1, col)
            per_panel[-1].append(len(fig.data) - 1)
        for c in range(C):  # faint full paths
            px, py = _segments(np.transpose(ch.x[:, ch.y == c, :2], (1, 0, 2)))
            fig.add_trace(
                go.Scatter(
                    x=px,
                    y=py,
                    mode="lines",
                    line=dict(color=PALETTE[c], width=1),
                    opacity=0.25,
                    showlegend=False,
                    hoverinfo="skip",
                ),
                1,
                col,
            )
            static.append(len(fig.data) - 1)
        e = v.extent  # both panels share one window (the union of the two): the same scale on both sides
        fig.update_xaxes(range=[shared[0], shared[1]], row=1, col=col)
        fig.update_yaxes(range=[shared[2], shared[3]], row=1, col=col)
        ref = "" if col == 1 else str(col)
        if own:  # each frame's window, the same for both panels (the frames' layouts set it)
            xr, yr = window(0.0)
            fig.update_xaxes(range=xr, row=1, col=col)
            fig.update_yaxes(range=yr, row=1, col=col)
        for x0, x1, y0, y1 in (
            ()
            if own
            else (
                (shared[0], e[0], shared[2], shared[3]),
                (e[1], shared[1], shared[2], shared[3]),
                (e[0], e[1], shared[2], e[2]),
                (e[0], e[1], e[3], shared[3]),
            )
        ):
            if x1 > x0 and y1 > y0:  # where this run's surface was not computed: grey, not the scale's white
                fig.add_shape(
                    type="rect",
                    x0=x0,
                    x1=x1,
                    y0=y0,
                    y1=y1,
                    xref=f"x{ref}",
                    yref=f"y{ref}",
                    fillcolor="#e4e4e4",
                    line=dict(width=0),
                    layer="below",
                )
        _equal_axes(fig, row=1, col=col)
        fig.update_yaxes(scaleanchor=f"x{col if col > 1 else ''}", row=1, col=col)
    frames = []
    for t in ts:
        data, traces = [], []
        for v, idx, pp in zip(views, per_panel, paths):
            i = _nearest_frame(v.surfaces.t, min(t, float(v.t[-1])))
            data += panel_data(v, i, pp)
            traces += idx
        lay = dict(title_text=_sbs_title(t))
        if own:
            xr, yr = window(t)
            lay.update(xaxis=dict(range=xr), yaxis=dict(range=yr), xaxis2=dict(range=xr), yaxis2=dict(range=yr))
        frames.append(go.Frame(name=f"{t:.4g}", data=data, traces=traces, layout=lay))
    fig.frames = frames
    steps = [
        dict(
            method="animate",
            label=f"{t:.3g}",
            args=[
                [f"{t:.4g}"],
                dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0)),
            ],
        )
        for t in ts
    ]
    slider = dict(
        active=0,
        steps=steps,
        x=0.08,
        len=0.9,
        y=-0.02,
        yanchor="top",
        currentvalue=dict(prefix="t = ", font=dict(size=16)),
        pad=dict(t=40),
    )
    play = dict(
        type="buttons",
        showactive=False,
        x=0.0,
        y=-0.02,
        xanchor="left",
        yanchor="top",
        pad=dict(t=45),
        buttons=[
            dict(
                label="▶",
                method="animate",
                args=[
                    None,
                    dict(
                        mode="immediate",
                        frame=dict(duration=200, redraw=True),
                        fromcurrent=True,
                        transition=dict(duration=0),
                    ),
                ],
            )
        ],
    )
    for a_ in fig.layout.annotations:
        a_.font = dict(size=16)
    _layout(fig, _sbs_title(ts[0]), height=600, sliders=[slider], updatemenus=[play])
    return fig


@styled
def residual_ratios(a: FlowViews, b: FlowViews, titles: tuple[str, str] | None = None) -> go.Figure:
    """The residual ratio |s_k V_k| / |x| of each block of two runs against the block's time t_k, on one log axis:
    deep means small steps (the paper's section 3.3)."""
    views = (a, b)
    titles = titles or tuple(f"L = {v.config.n_steps}" for v in views)
    fig = go.Figure()
    means = []
    for i, (v, name) in enumerate(zip(views, titles)):
        r = np.asarray(v.diagnostics.residual_ratio, dtype=np.float64)
        means.append(float(r.mean()) if len(r) else float("nan"))
        fig.add_trace(
            go.Scatter(
                x=_f32(v.t[1 : len(r) + 1]),
                y=_f32(r),
                mode="lines+markers",
                name=name,
                line=dict(color=PALETTE[[0, 5][i]], width=3),
                marker=dict(size=12 if len(r) < 8 else 6, color=PALETTE[[0, 5][i]]),
            )
        )
    fig.update_xaxes(title_text="t_k (the time block k ends at)")
    fig.update_yaxes(type="log", exponentformat="power", title_text="|s_k V_k| / |x|")
    lo, hi = sorted(means)
    times = f": {hi / lo:.0f}× smaller on average" if lo > 0 and np.isfinite(hi / lo) else ""
    return _layout(fig, f"Residual ratio per block, {titles[0]} against {titles[1]}{times}", height=560)


def coarse_to_fine_curve(c: CoarseToFine) -> go.Figure:
    """Training loss across the levels of coarse-to-fine training, against training at the finest L from scratch."""
    fig = go.Figure()
    for li, L in enumerate(c.levels):
        rows = [r for r in c.history if r["level"] == li]
        if rows:
            fig.add_trace(
                go.Scatter(
                    x=[r["step"] for r in rows],
                    y=_f32([r["loss"] for r in rows]),
                    mode="lines",
                    name=f"level L = {L}",
                    line=dict(width=3, color=PALETTE[li % len(PALETTE)]),
                )
            )
    if c.scratch is not None:
        h = c.scratch.history
        fig.add_trace(
            go.Scatter(
                x=[r["step"] for r in h],
                y=_f32([r["loss"] for r in h]),
                mode="lines",
                name=f"from scratch at L = {c.levels[-1]}",
                line=dict(width=3, dash="dot", color="#444444"),
            )
        )
    fig.update_xaxes(title_text="optimiser step (all levels)")
    fig.update_yaxes(type="log", title_text="training loss")
    title = (
        f"Coarse to fine: {c.cost:,} block evaluations, {c.wall_s:.1f} s, "
        f"final loss {c.result.metrics['train_loss']:.3g}"
    )
    if c.scratch is not None:
        title += (
            f"<br>from scratch: {c.scratch_cost:,} block evaluations, {c.scratch_wall_s:.1f} s, "
            f"final loss {c.scratch.metrics['train_loss']:.3g}"
        )
    return _layout(fig, title, height=500)


SWEEP_FIGURES = {
    "metrics": sweep_metrics,
    "surfaces": sweep_surfaces,
    "error": sweep_error,
    "convergence": sweep_convergence,
    "conditions": sweep_conditions,
    "transfer": sweep_transfer,
}


def sweep_html(s: SweepResult, extra: list[go.Figure] = (), title: str | None = None) -> str:
    """One self-contained HTML page with every sweep figure (plotly.js inlined: works offline)."""
    figs = [fn(s) for fn in SWEEP_FIGURES.values()] + list(extra)
    parts = [
        f.to_html(full_html=False, include_plotlyjs=(i == 0), auto_play=False, config=dict(displaylogo=False))
        for i, f in enumerate(figs)
    ]
    title = title or f"flowviz sweep over {s.key}: {', '.join(map(str, s.values))}"
    notes = "".join(f"<p>{html.escape(n)}</p>" for n in s.notes)
    return (
        f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head>"
        f"<body style='font-family: sans-serif; max-width: 1400px; margin: auto'>"
        f"<h1>{html.escape(title)}</h1>{notes}" + "".join(parts) + "</body></html>"
    )
