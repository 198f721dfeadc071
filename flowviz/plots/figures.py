"""The figures. Notation follows the paper: x_k at time t_k, u(t_k, .) the transported terminal value,
F = u(0, .) the decision function, f = u(T, .) the output layer, V_k = v(t_k, .)."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ..training.analysis import FlowViews, analyse
from ..training.lifted import slice_name
from .encoding import FULL_HD, PROB_TOP, half_pixel, prob_bytes, simplify
from .encoding import segments as _segments
from .probepath import probe_point, probe_traces, probe_traces_3d
from .style import apply, int_ticks, round_for_reading, styled

# Okabe-Ito: distinguishable with the common colour-vision deficiencies
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#000000"]
SURFACE_OPACITY = 0.55
DIVERGING = "RdBu_r"  # signed quantities, centred at 0: blue negative, white 0, red positive (in every view)


def _views(obj) -> FlowViews:
    if isinstance(obj, FlowViews):
        return obj
    return analyse(obj.model, obj.data, history=getattr(obj, "history", None))  # a TrainResult


def _f32(a):
    return np.asarray(a, dtype=np.float32)


def _layout(fig: go.Figure, title: str, height: int = 620, **kw) -> go.Figure:
    """Title, height and layout settings; fonts, margins, legend and colour bars are :mod:`.style`'s."""
    fig.update_layout(title=dict(text=title), height=height, template="plotly_white", **kw)
    return fig


def _note(text: str, title: str, height: int = 300, size: int = 16) -> go.Figure:
    """A figure that only says, in its middle, why there is nothing to draw (yet)."""
    fig = go.Figure()
    fig.add_annotation(text=text, showarrow=False, x=0.5, y=0.5, xref="paper", yref="paper", font=dict(size=size))
    return _layout(fig, title, height=height)


def _equal_axes(fig, row=None, col=None, x="x<sub>1</sub>", y="x<sub>2</sub>"):
    fig.update_xaxes(title_text=x, row=row, col=col, constrain="domain")
    fig.update_yaxes(title_text=y, row=row, col=col, scaleanchor="x" if row is None else None)
    return fig


def _surface_trace(views: FlowViews, u: np.ndarray, x1, x2, *, showscale=True, colorbar_x=None) -> go.Heatmap:
    """u (res, res, C): two classes as P(class 1) on a diverging scale; more as the likeliest class."""
    C = u.shape[-1]
    z = _surface_z(u)
    smooth = "best"
    if C == 2:  # P(class 1) quantised to bytes: 4x less to send, finer than the eye can tell
        scale, zmin, zmax = [[0, PALETTE[0]], [0.5, "#ffffff"], [1, PALETTE[1]]], 0, PROB_TOP
        cb = dict(
            title=dict(text="u = P(class 1)", side="right"),
            tickvals=[0, PROB_TOP / 2, PROB_TOP],
            ticktext=["0", "0.5", "1"],
        )
    else:  # categories: one flat colour per class, steps between them, no smoothing across classes
        scale = categorical_scale(C)
        zmin, zmax, smooth = -0.5, C - 0.5, False
        cb = dict(
            title=dict(text="likeliest class", side="right"),
            tickvals=list(range(C)),
            ticktext=[str(c) for c in range(C)],
        )
    cb.update(thickness=14, len=0.8)
    if colorbar_x is not None:
        cb["x"] = colorbar_x
    return go.Heatmap(
        x=_f32(x1),
        y=_f32(x2),
        z=z,
        colorscale=scale,
        zmin=zmin,
        zmax=zmax,
        opacity=SURFACE_OPACITY,
        showscale=showscale,
        colorbar=cb,
        hoverinfo="skip",
        zsmooth=smooth,
    )


def categorical_scale(C: int) -> list:
    """A colour scale of C flat bands over [-0.5, C - 0.5]: class c is PALETTE[c] on [c - 0.5, c + 0.5]."""
    out = []
    for c in range(C):
        out += [[c / C, PALETTE[c]], [(c + 1) / C, PALETTE[c]]]
    return out


def _surface_z(u: np.ndarray) -> np.ndarray:
    """The bytes a surface trace shows for u (res, res, C): P(class 1) for two classes, else the likeliest class."""
    return prob_bytes(u[..., 1]) if u.shape[-1] == 2 else u.argmax(-1).astype(np.uint8)


def _dims_note(views: FlowViews, what: str = "u") -> str:
    """With a lift: which coordinates are drawn, and the slice the background ``what`` lives on."""
    d = views.config.dim
    return "" if d == 2 else f" · first two of {d} coordinates shown, {what} on the slice {slice_name(d)}"


def point_groups(v: FlowViews, i: int) -> tuple[list[np.ndarray], list[str]]:
    """The shown points of each marker trace at frame i, and their names.

    Without a lift, by label. With a lift the background is only a slice, so each point is coloured by its own
    u(t_k, x_k) at its full coordinates (v.point_u): a point never wears a colour the flow does not give it.
    """
    ch = v.characteristics
    C = v.surfaces.u.shape[-1]
    if v.point_u is None:
        return [ch.y == c for c in range(C)], [f"class {c}" for c in range(C)]
    own = v.point_u[i].argmax(-1)
    return [own == c for c in range(C)], [f"u(t_k, x_k) says class {c}" for c in range(C)]


def mc_note(views: FlowViews) -> str:
    """For eps > 0: how u was estimated and its largest Monte-Carlo standard error over the grid and frames."""
    se = views.surfaces.mc_stderr
    if se is None or not len(se):
        return ""
    return (
        f" · u = E f(X_T) from M = {views.config.mc_samples} noise paths shared by all grid points, "
        f"Monte-Carlo s.e. ≤ {float(np.max(se)):.3f}"
    )


def _frame_slider(ks, t, prefix="k"):
    steps = [
        dict(
            method="animate",
            label=str(int(k)),
            args=[
                [str(int(k))],
                dict(mode="immediate", frame=dict(duration=0, redraw=True), transition=dict(duration=0)),
            ],
        )
        for k in ks
    ]
    slider = dict(
        active=0,
        steps=steps,
        x=0.1,
        len=0.9,
        y=0,
        yanchor="top",
        currentvalue=dict(prefix=f"{prefix} = ", visible=False),
    )
    play = dict(
        type="buttons",
        showactive=False,
        direction="left",
        x=0.0,
        y=0,
        xanchor="left",
        yanchor="top",
        buttons=[
            dict(
                label="▶",
                method="animate",
                args=[
                    None,
                    dict(
                        mode="immediate",  # (a press during a transition starts at once instead of waiting behind it)
                        frame=dict(duration=250, redraw=True),
                        fromcurrent=True,
                        transition=dict(duration=0),
                    ),
                ],
            ),
            dict(
                label="❚❚",
                method="animate",
                args=[[None], dict(mode="immediate", frame=dict(duration=0, redraw=False))],
            ),
        ],
    )
    return [slider], [play]


@styled
def characteristics(obj, *, probe_path=None, fixed_window: bool = False) -> go.Figure:
    """The characteristics x_0 -> x_L over u(t_k, .), with the deformed grid; one animation frame per step k.
    With ``probe_path`` (L+1, d): the probe's whole path, and its point x_k in each frame (:mod:`.probepath`).

    Each frame shows its own window around its points x_k, with u(t_k, .) computed on it (``views.windows``,
    ``views.frame_surfaces``); ``fixed_window``: one window, the whole flow's, for every frame."""
    v = _views(obj)
    ch, s, ks = v.characteristics, v.surfaces, v.surfaces.ks
    fs = None if fixed_window else v.frame_surfaces
    windows = None if fs is None else frame_windows_with(v.windows, probe_path)
    C = s.u.shape[-1]
    e = v.extent
    spans = [(e[1] - e[0], e[3] - e[2])] + ([] if windows is None else [(w[1] - w[0], w[3] - w[2]) for w in windows])
    tol = min(half_pixel(*sp) for sp in spans)  # within half a pixel at 1920 x 1080 in the most zoomed-in frame
    gx = [_segments(v.grid[i][..., :2], tol) for i in range(len(ks))]
    first = _surface_trace(v, s.u[0], s.x1, s.x2) if fs is None else _surface_trace(v, fs.u[0], fs.x1[0], fs.x2[0])
    traces = [
        first,
        go.Scatter(
            x=gx[0][0],
            y=gx[0][1],
            mode="lines",
            line=dict(color="rgba(60,60,60,0.35)", width=1),
            name="deformed grid",
            hoverinfo="skip",
        ),
    ]
    cls = [ch.y == c for c in range(C)]
    groups, names = point_groups(v, 0)
    for c in range(C):  # full paths, faint; one legend entry for all
        px, py = _segments(np.transpose(ch.x[:, cls[c], :2], (1, 0, 2)), tol)
        traces.append(
            go.Scatter(
                x=px,
                y=py,
                mode="lines",
                line=dict(color=PALETTE[c], width=1.2),
                opacity=0.4,
                name="paths x₀ → x<sub>L</sub>",
                legendgroup="paths",
                hoverinfo="skip",
                showlegend=c == 0,
            )
        )
    n_static = len(traces)
    for c in range(C):  # where each point is at step k
        traces.append(
            go.Scatter(
                x=_f32(ch.x[ks[0], groups[c], 0]),
                y=_f32(ch.x[ks[0], groups[c], 1]),
                mode="markers",
                name=names[c],
                marker=dict(color=PALETTE[c], size=8, line=dict(color="white", width=1)),
            )
        )
    moving = [0, 1] + list(range(n_static, n_static + C))
    if probe_path is not None:  # the path stays; its star moves with the frames
        traces += probe_traces(probe_path, int(ks[0]))
        moving.append(len(traces) - 1)
    frames = []
    for i, k in enumerate(ks):
        # a frame carries only what changes: the surface's z (its axes, scale and colour bar stay)
        heat = (
            go.Heatmap(z=_surface_z(s.u[i]))
            if fs is None
            else go.Heatmap(x=_f32(fs.x1[i]), y=_f32(fs.x2[i]), z=_surface_z(fs.u[i]))
        )
        data = [heat, go.Scatter(x=gx[i][0], y=gx[i][1])]
        groups = point_groups(v, i)[0]
        data += [go.Scatter(x=_f32(ch.x[k, groups[c], 0]), y=_f32(ch.x[k, groups[c], 1])) for c in range(C)]
        if probe_path is not None:
            data.append(probe_point(probe_path, int(k), full=False))
        lay = dict(title_text=_char_title(v, k))
        if fs is not None:  # the frame's own window
            w = windows[i]
            lay.update({"xaxis.range": [float(w[0]), float(w[1])], "yaxis.range": [float(w[2]), float(w[3])]})
        frames.append(go.Frame(name=str(int(k)), data=data, traces=moving, layout=lay))
    fig = go.Figure(data=traces, frames=frames)
    sliders, menus = _frame_slider(ks, v.t)
    if fs is not None:
        e = tuple(float(a) for a in windows[0])
    fig.update_xaxes(range=[e[0], e[1]])
    fig.update_yaxes(range=[e[2], e[3]])
    _equal_axes(fig)
    return _layout(fig, _char_title(v, ks[0]), height=650, sliders=sliders, updatemenus=menus)


def frame_windows_with(windows: np.ndarray, path=None) -> np.ndarray:
    """The frames' windows (n, 4) grown, each about its centre and square, so that the whole probe path
    (L+1, d) lies inside every one (the path is drawn in every frame); ``windows`` itself without a path."""
    if path is None:
        return windows
    p = np.asarray(path, np.float64)[:, :2]
    p = p[np.isfinite(p).all(1)]
    if not len(p):
        return windows
    out = np.array(windows, np.float64)
    c = np.c_[out[:, 0] + out[:, 1], out[:, 2] + out[:, 3]] / 2
    half = (out[:, 1] - out[:, 0]) / 2
    reach = np.abs(p[None, :, :] - c[:, None, :]).max(axis=(1, 2)) * 1.05
    half = np.maximum(half, reach)
    return np.c_[c[:, 0] - half, c[:, 0] + half, c[:, 1] - half, c[:, 1] + half]


def _char_title(v: FlowViews, k) -> str:
    shown = len(v.characteristics.y)
    if v.config.dim > 2:  # the background is a slice the points leave: say so, and what colours the points
        return (
            f"x_k at k = {int(k)}, t_k = {round_for_reading(v.t[int(k)])}, first two of {v.config.dim} coordinates"
            f" · u(t_k, ·) on the slice {slice_name(v.config.dim)}; points by their own u(t_k, x_k)"
        )
    return (
        f"x_k over u(t_k, ·) at k = {int(k)}, t_k = {v.t[int(k)]:.3g} · "
        f"{shown} of {v.characteristics.n_total} points{_dims_note(v)}"
    )


@styled
def samples(data, height: int = 680) -> go.Figure:
    """The data set before training: the points x_0 coloured by class, train and test (drawn while the first
    picture of a run is on its way, so the page is never empty)."""
    fig = go.Figure()
    n_tr = len(data.x_train)
    for c in range(data.n_classes):
        for name, x, y, sym in (
            ("train", data.x_train, data.y_train, "circle"),
            ("test", data.x_test, data.y_test, "diamond"),
        ):
            m = y == c
            if m.any():
                fig.add_trace(
                    go.Scatter(
                        x=_f32(x[m, 0]),
                        y=_f32(x[m, 1]),
                        mode="markers",
                        name=f"{name}, class {c}",
                        marker=dict(
                            color=PALETTE[c],
                            size=7 if name == "train" else 9,
                            symbol=sym,
                            line=dict(color="white", width=0.5),
                        ),
                    )
                )
    e = data.extent()
    fig.update_xaxes(range=[e[0], e[1]])
    fig.update_yaxes(range=[e[2], e[3]])
    _equal_axes(fig)
    return _layout(fig, f"The samples x_0: {n_tr} to train on, {len(data.x_test)} to test", height=height)


@styled
def decision(obj, *, probe_path=None) -> go.Figure:
    """F = u(0, .) on the input plane with train/test points (misclassified ringed), beside f on the output space.
    With ``probe_path`` (L+1, d): the probe's path on both, starred at x_0 (left) and x_L (right):
    F(x_0) = f(x_L) for eps = 0."""
    v = _views(obj)
    ds, s, o = v.data, v.surfaces, v.output_surface
    right = "f = u(T, ·) on the output space, x_L"
    if v.output_class is not None:
        right = f"f on the slice {slice_name(v.config.dim)}; x_L coloured by its own f(x_L)"
    fig = make_subplots(
        rows=1, cols=2, horizontal_spacing=0.1, subplot_titles=("F = u(0, ·) on the input plane", right)
    )
    fig.add_trace(_surface_trace(v, s.u[0], s.x1, s.x2, colorbar_x=1.02), 1, 1)
    fig.add_trace(_surface_trace(v, o.u[0], o.x1, o.x2, showscale=False), 1, 2)
    n_tr = len(ds.x_train)
    pred = v.predicted
    for c in range(ds.n_classes):
        for name, sl, sym in (("train", slice(0, n_tr), "circle"), ("test", slice(n_tr, None), "diamond")):
            yy = ds.y[sl]
            m = yy == c
            if not m.any():
                continue
            fig.add_trace(
                go.Scatter(
                    x=_f32(ds.x[sl][m, 0]),
                    y=_f32(ds.x[sl][m, 1]),
                    mode="markers",
                    marker=dict(
                        color=PALETTE[c],
                        size=7 if name == "train" else 9,
                        symbol=sym,
                        line=dict(color="white", width=0.5),
                    ),
                    name=f"class {c}",
                    legendgroup=f"{c}",
                    showlegend=name == "train",  # one entry a class; the test points' shape has its own
                ),
                1,
                1,
            )
            xl = v.output_points[sl][m]
            own = PALETTE[c] if v.output_class is None else [PALETTE[j] for j in v.output_class[sl][m]]
            fig.add_trace(
                go.Scatter(
                    x=_f32(xl[:, 0]),
                    y=_f32(xl[:, 1]),
                    mode="markers",
                    showlegend=False,
                    marker=dict(color=own, size=6, symbol=sym),
                    legendgroup=f"{c}",
                ),
                1,
                2,
            )
    if len(ds.x) > n_tr:  # the test points' shape, once for every class
        fig.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                name="test points",
                marker=dict(color="#777777", size=9, symbol="diamond"),
            ),
            1,
            1,
        )
    wrong = pred != ds.y
    if wrong.any():
        fig.add_trace(
            go.Scatter(
                x=_f32(ds.x[wrong, 0]),
                y=_f32(ds.x[wrong, 1]),
                mode="markers",
                marker=dict(symbol="circle-open", size=14, color="#d00000", line=dict(width=2)),
                name=f"misclassified ({int(wrong.sum())})",
            ),
            1,
            1,
        )
    if probe_path is not None:
        L = len(probe_path) - 1
        for col, (k, label) in enumerate(((0, "x_0"), (L, "x_L")), 1):
            for tr in probe_traces(probe_path, k, label=label, legend=col == 1, star_legend=True):
                fig.add_trace(tr, 1, col)
    e = ds.extent()
    # equal aspect by narrowing the plane, never by widening its range (in either direction: a panel may be too wide
    # or too tall for its box): plotly keeps a range it widened at a figure's first drawing, so a widened range would
    # depend on the sizes the page drew the figure at before
    fig.update_xaxes(range=[e[0], e[1]], title_text="x<sub>1</sub>", constrain="domain", row=1, col=1)
    fig.update_yaxes(range=[e[2], e[3]], title_text="x<sub>2</sub>", scaleanchor="x", constrain="domain", row=1, col=1)
    fig.update_xaxes(
        range=[float(o.x1[0]), float(o.x1[-1])], title_text="x<sub>L,1</sub>", constrain="domain", row=1, col=2
    )
    fig.update_yaxes(
        range=[float(o.x2[0]), float(o.x2[-1])],
        title_text="x<sub>L,2</sub>",
        scaleanchor="x2",
        constrain="domain",
        row=1,
        col=2,
    )
    title = "Decision: F = f ∘ Φ" + _dims_note(v, "f")
    if mc_note(v):
        title += "<br><sup>" + mc_note(v)[3:] + "</sup>"
    return _layout(fig, title, height=600)


@styled
def transport(obj, panels: int = 6, *, probe_path=None) -> go.Figure:
    """u(t_k, .) as k goes from L down to 0: the terminal value f transported back to the input (small multiples).
    With ``probe_path`` (L+1, d): the probe's path on each panel, starred at its x_k (for eps = 0 and p = 0,
    u(t_k, x_k) is one colour)."""
    v = _views(obj)
    s = v.surfaces
    fs = v.frame_surfaces  # each frame's own window (the points x_k of that frame), where the run has them
    idx = np.unique(np.round(np.linspace(len(s.ks) - 1, 0, min(panels, len(s.ks)))).astype(int))[::-1]
    cols = min(3, len(idx))
    rows = int(np.ceil(len(idx) / cols))
    shared = "all" if fs is None else False
    fig = make_subplots(
        rows=rows,
        cols=cols,
        horizontal_spacing=0.04 if fs is None else 0.07,
        vertical_spacing=0.12,
        shared_xaxes=shared,
        shared_yaxes=shared,
        subplot_titles=[f"u(t_{int(s.ks[i])} = {round_for_reading(s.t[i])}, ·)" for i in idx],
    )
    for j, i in enumerate(idx):
        r, c = j // cols + 1, j % cols + 1
        x1, x2, u = (s.x1, s.x2, s.u[i]) if fs is None else (fs.x1[i], fs.x2[i], fs.u[i])
        fig.add_trace(_surface_trace(v, u, x1, x2, showscale=j == 0), r, c)
        if probe_path is not None:  # within the surface's box (the path may leave it)
            for tr in probe_traces(probe_path, int(s.ks[i]), legend=j == 0):
                fig.add_trace(tr, r, c)
        if probe_path is not None or fs is not None:
            fig.update_xaxes(range=[float(x1[0]), float(x1[-1])], row=r, col=c)
            fig.update_yaxes(range=[float(x2[0]), float(x2[-1])], row=r, col=c)
        fig.update_xaxes(title_text="x<sub>1</sub>" if r == rows else None, constrain="domain", row=r, col=c)
        anchor = "x" if j == 0 else (None if fs is None else f"x{j + 1}")
        fig.update_yaxes(  # (as the decision surface's planes)
            title_text="x<sub>2</sub>" if c == 1 else None, scaleanchor=anchor, constrain="domain", row=r, col=c
        )
    return _layout(
        fig, "Transport: u(T, ·) = f carried back to u(0, ·) = F" + _dims_note(v, "u(t_k, ·)"), height=340 * rows + 40
    )


@styled
def spacetime(obj, *, probe_path=None) -> go.Figure:
    """Characteristics in space-time (x1, x2, t); with a lift, in the first three coordinates (x1, x2, x3).
    With ``probe_path`` (L+1, d): the probe's path in the same coordinates."""
    v = _views(obj)
    ch = v.characteristics
    lifted = ch.x.shape[-1] >= 3
    fig = go.Figure()
    xyz = np.concatenate(
        [ch.x[..., :2], ch.x[..., 2:3] if lifted else np.broadcast_to(ch.t[:, None, None], ch.x.shape[:2] + (1,))], -1
    )  # (L+1, n, 3)
    span = np.nanmax(xyz, (0, 1)) - np.nanmin(xyz, (0, 1))
    aspect = np.array([1.0, 1.0, 0.8])
    # in the scene's own units (each axis spans its aspect): half a pixel of a 1080-pixel-high cube
    normed = xyz * (aspect / np.where(span > 0, span, 1.0))
    for c in range(int(ch.y.max()) + 1 if len(ch.y) else 0):
        paths = np.transpose(xyz[:, ch.y == c, :], (1, 0, 2))  # (m, L+1, 3)
        m, p, _ = paths.shape
        keep = np.concatenate(
            [simplify(np.transpose(normed[:, ch.y == c], (1, 0, 2)), 0.5 / FULL_HD[1]), np.ones((m, 1), bool)], 1
        )
        line = np.concatenate([paths, np.full((m, 1, 3), np.nan)], 1)[keep]  # kept vertices, NaN between paths
        fig.add_trace(
            go.Scatter3d(
                x=_f32(line[:, 0]),
                y=_f32(line[:, 1]),
                z=_f32(line[:, 2]),
                mode="lines",
                line=dict(color=PALETTE[c], width=2),
                opacity=0.6,
                name=f"class {c}",
            )
        )
    if probe_path is not None:
        pp = np.asarray(probe_path)
        for tr in probe_traces_3d(np.c_[pp[:, :2], pp[:, 2:3] if lifted else ch.t[:, None]], None):
            fig.add_trace(tr)
    ztitle = "x₃" if lifted else "t"
    fig.update_layout(
        scene=dict(
            xaxis_title="x₁",
            yaxis_title="x₂",
            zaxis_title=ztitle,
            xaxis=dict(nticks=6),
            yaxis=dict(nticks=6),
            zaxis=dict(nticks=6),
            aspectmode="manual",
            aspectratio=dict(zip("xyz", aspect.tolist())),
            camera=dict(eye=dict(x=1.2, y=-1.2, z=0.72)),  # close: the scene fills its frame
            domain=dict(x=[0, 1], y=[0, 1]),
        )
    )
    title = (
        "Characteristics in the first three coordinates (x₁, x₂, x₃) of ℝ"
        + str(ch.x.shape[-1]).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹"))
        if lifted
        else "Characteristics in space-time (x₁, x₂, t)"
    )
    return _layout(fig, title + " — drag to rotate", height=640)


@styled
def learning_curves(obj) -> go.Figure:
    """Loss and accuracy (train and test) against the optimiser step."""
    v = _views(obj)
    h = v.history
    fig = make_subplots(rows=1, cols=2, subplot_titles=("cross-entropy loss", "accuracy"), horizontal_spacing=0.12)
    step = _f32([r["step"] for r in h])
    for key, name, col, color in (
        ("loss", "train loss", 1, PALETTE[0]),
        ("test_loss", "test loss", 1, PALETTE[1]),
        ("train_accuracy", "train accuracy", 2, PALETTE[0]),
        ("test_accuracy", "test accuracy", 2, PALETTE[1]),
    ):
        fig.add_trace(
            go.Scatter(
                x=step,
                y=_f32([r[key] for r in h]),
                name=name,
                mode="lines",
                line=dict(color=color, width=3, dash="dot" if "test" in key else None),
            ),
            1,
            col,
        )
    fig.update_yaxes(type="log", title_text="loss", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], title_text="accuracy", row=1, col=2)
    fig.update_xaxes(title_text="optimiser step")
    return _layout(fig, "Training (the inverse problem)", height=460)


@styled
def diagnostics(obj) -> go.Figure:
    """The paper's section 3.3 conditions per step, the folding test det D(step) > 0, and the error against x(t)."""
    v = _views(obj)
    d = v.diagnostics
    L = len(d.residual_ratio)
    k = np.arange(1, L + 1)
    fig = make_subplots(
        rows=2,
        cols=2,
        vertical_spacing=0.2,
        horizontal_spacing=0.12,
        subplot_titles=(
            "residual ratio |s_k V_k| / |x|",
            "weight drift |θ_k − θ_(k−1)|",
            f"min det D(step k): {d.det_grid}×{d.det_grid} grid (bars),<br>data points (◆)",
            "error |x_k − x(t_k)|",
        ),
    )
    fig.add_trace(go.Bar(x=k, y=_f32(d.residual_ratio), marker_color=PALETTE[0], name="ratio"), 1, 1)
    fig.add_trace(go.Bar(x=k[1:], y=_f32(d.weight_drift), marker_color=PALETTE[2], name="drift"), 1, 2)
    colors = [PALETTE[5] if x < 0 else PALETTE[4] for x in d.min_jac_det]
    fig.add_trace(go.Bar(x=k, y=_f32(d.min_jac_det), marker_color=colors, name="min det, grid"), 2, 1)
    if d.min_jac_det_data is not None:
        fig.add_trace(
            go.Scatter(
                x=k,
                y=_f32(d.min_jac_det_data),
                mode="markers",
                name="min det, data points",
                marker=dict(symbol="diamond", size=9, color=PALETTE[7]),
            ),
            2,
            1,
        )
    fig.add_hline(
        y=0,
        line=dict(color="#d00000", width=2, dash="dash"),
        row=2,
        col=1,
        annotation_text="fold: det < 0",
        annotation_position="bottom right",
    )
    if np.isfinite(d.error).any():
        fig.add_trace(
            go.Scatter(x=_f32(v.t), y=_f32(d.error), mode="lines+markers", marker_color=PALETTE[3], name="error"), 2, 2
        )
    else:
        fig.add_annotation(
            text="no reference: plain net, viscous run, or still training",
            showarrow=False,
            xref="x4 domain",
            yref="y4 domain",
            x=0.5,
            y=0.5,
            font=dict(size=15),
        )
    for r, c in ((1, 1), (1, 2), (2, 1)):
        fig.update_xaxes(title_text="block k", row=r, col=c, **int_ticks(L))
    fig.update_xaxes(title_text="t", row=2, col=2)
    return _layout(
        fig,
        f"Diagnostics: is this ResNet a flow?  |x_L − x(T)| = {round_for_reading(d.disc_error)}",
        height=640,
        showlegend=False,
    )


@styled
def weights(obj) -> go.Figure:
    """Heatmaps of the block weights θ_k over k (rows: weight entries; columns: blocks)."""
    v = _views(obj)
    names = list(v.weights)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, horizontal_spacing=0.05)
    lim = max((float(np.abs(v.weights[n]).max()) for n in names), default=0.0) or 1.0  # one scale, one colour bar
    for i, n in enumerate(names):
        w = v.weights[n]
        fig.add_trace(
            go.Heatmap(
                z=_f32(w.T),
                x=np.arange(1, len(w) + 1),
                colorscale=DIVERGING,
                zmid=0,
                zmin=-lim,
                zmax=lim,
                showscale=i == 0,
                colorbar=dict(title=dict(text="θ", side="right")),
            ),
            1,
            i + 1,
        )
        fig.update_xaxes(title_text="block k", row=1, col=i + 1, **int_ticks(len(w), max(2, 8 // len(names))))
        fig.update_yaxes(showticklabels=i == 0, row=1, col=i + 1)
    return _layout(fig, "Weights θ_k over the blocks (smooth in k ⇔ a discretised continuous field)", height=420)


def presentation(fig: go.Figure, *, frame: str = "present") -> go.Figure:
    """Projector style (:mod:`.style`'s ``present`` frame, 1280 x 720): large type, thick lines, a visible grid."""
    return apply(fig, frame)
