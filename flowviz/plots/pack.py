"""The lecture pack: one self-contained HTML page per run (every view, the instruments at the scenario's probe
point, the training checkpoints, the scenario's text and formula) and an index linking the pages.

A page carries one inlined copy of plotly.js (gzip, with the figures' code) and needs no network: no CDN, no
MathJax (the formula is Unicode).
Its run's link and config are in a caption line, in ``<meta>`` tags and in a ``<script type="application/json"
id="flowviz-run">`` block, so a student can reopen the live run. The numbers come from
:func:`flowviz.training.packdata.pack_data`; every figure is one of this package's own builders.
"""

from __future__ import annotations

import base64
import gzip
import html
import io
import json
import math
import re
import zipfile
from urllib.parse import urlencode

import numpy as np
import plotly.graph_objects as go
import plotly.offline

from ..core.config import Config
from ..training.packdata import PackData, TrainingFrames
from .field import folding, velocity
from .figures import (
    PALETTE,
    _frame_slider,
    _layout,
    _surface_trace,
    _surface_z,
    characteristics,
    decision,
    diagnostics,
    learning_curves,
    presentation,
    spacetime,
    transport,
    weights,
)
from .instruments import adjoint, probe, stability, transport_grid, volume
from .lifted import lifted

__all__ = [
    "DEFAULT_LINK_BASE",
    "formula",
    "run_link",
    "run_meta",
    "page_figures",
    "scenario_html",
    "index_html",
    "training_figure",
    "pack_files",
    "pack_zip",
]

DEFAULT_LINK_BASE = "http://localhost:8501/"

# the block of each field and scheme in Unicode (the page's LaTeX formula, readable without MathJax)
FIELD_TEXT = {
    "two_layer": "W⁽²⁾ₖ σ(W⁽¹⁾ₖ xₖ₋₁ + b⁽¹⁾ₖ) + b⁽²⁾ₖ",
    "mlp": "MLPₖ(xₖ₋₁, tₖ)",
    "antisymmetric": "σ((Kₖ − Kₖᵀ − γI) xₖ₋₁ + bₖ)",
}
SCHEME_TEXT = {
    "plain": "xₖ = {v}{noise}   (plain net: no shortcut; a block is a map, not a small step)",
    "euler": "xₖ = xₖ₋₁ + sₖ [{v}]{noise},   {sk}",
}
RK_TEXT = "xₖ = xₖ₋₁ + sₖ Σᵢ bᵢ Kᵢ{noise}  ({scheme}),   Kᵢ = v(tₖ₋₁ + cᵢ sₖ, xₖ₋₁ + sₖ Σ_(j<i) aᵢⱼ Kⱼ),   {sk}"

# the pack's views in page order: (section title, builder, takes the probe's path)
VIEWS = [
    ("Characteristics", characteristics, True),
    ("Lifted space", lifted, True),
    ("Decision surface", decision, True),
    ("Transport", transport, True),
    ("Transport in space-time", spacetime, True),
    ("Velocity field", velocity, True),
    ("Learning curves", learning_curves, False),
    ("Diagnostics", diagnostics, False),
    ("Folding", folding, False),
    ("Weights", weights, False),
]
INSTRUMENTS = [
    ("stability", "Instrument: stability region", stability),
    ("volume", "Instrument: volume and density", volume),
    ("grid", "Instrument: grid solver", transport_grid),
    ("adjoint", "Instrument: adjoint", adjoint),
]

CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0 auto;max-width:1280px;
padding:16px 28px;color:#1b1b1b;background:#fff;font-size:20px;line-height:1.45}
h1{font-size:34px;margin:8px 0 4px}h2{font-size:26px;margin:36px 0 6px;border-top:1px solid #ddd;padding-top:14px}
.formula{font-family:"DejaVu Serif",Georgia,serif;font-size:22px;background:#f6f6f6;padding:10px 14px;border-radius:6px}
.caption{color:#555;font-size:15px;word-break:break-all}.note{color:#8a5a00;font-size:17px}
nav a{margin-right:14px;font-size:16px}ul.runs li{margin:12px 0}.metrics{font-size:17px;color:#333}
"""


def formula(cfg: Config) -> str:
    """The block's equation in Unicode (the page's formula without LaTeX), the step size filled in."""
    sk = f"sₖ = T/L = {cfg.horizon / cfg.n_steps:.4g}" if cfg.partition == "uniform" else "sₖ (geometric)"
    v = FIELD_TEXT[cfg.field].replace("σ", cfg.activation if cfg.activation != "sigmoid" else "σ")
    noise = " + √(2ε sₖ) ξₖ" if cfg.viscosity > 0 else ""
    text = SCHEME_TEXT.get(cfg.scheme, RK_TEXT).format(v=v, noise=noise, sk=sk, scheme=cfg.scheme)
    if cfg.viscosity > 0:
        text += f",   ε = {cfg.viscosity:g},  ξₖ ~ N(0, I)"
    return text


def run_link(cfg: Config, scenario: str | None, base: str = DEFAULT_LINK_BASE) -> str:
    """The page's link that reopens this run: the scenario and every config key."""
    q = ({"scenario": scenario} if scenario else {}) | cfg.to_query()
    return f"{base}?{urlencode(q)}"


def run_meta(cfg: Config, scenario: str | None, metrics: dict, base: str = DEFAULT_LINK_BASE) -> dict:
    """What a pack file or a video carries to reopen the run: link, config, config key, scenario, metrics."""
    clean = {
        k: (None if isinstance(v, float) and not math.isfinite(v) else v)
        for k, v in (metrics or {}).items()
        if isinstance(v, (int, float, str)) or v is None
    }
    return {
        "flowviz": "run",
        "scenario": scenario,
        "link": run_link(cfg, scenario, base),
        "key": cfg.key(),
        "config": cfg.to_dict(),
        "metrics": clean,
    }


def training_figure(tf: TrainingFrames, data=None) -> go.Figure:
    """F = u(0, ·) at each training checkpoint over the data, one browser-side frame per kept step."""
    traces = [_surface_trace(None, tf.u[0], tf.x1, tf.x2)]
    if data is not None:
        for c in range(int(data.n_classes)):
            m = data.y == c
            traces.append(
                go.Scatter(
                    x=data.x[m, 0].astype(np.float32),
                    y=data.x[m, 1].astype(np.float32),
                    mode="markers",
                    name=f"class {c}",
                    marker=dict(color=PALETTE[c], size=5, line=dict(color="white", width=1)),
                )
            )

    def title(i):
        loss = "" if not np.isfinite(tf.loss[i]) else f", training loss {tf.loss[i]:.4f}"
        return f"Decision function F = u(0, ·) at training step {int(tf.steps[i])}{loss}"

    fig = go.Figure(
        data=traces,
        frames=[
            go.Frame(
                name=str(int(s)), data=[go.Heatmap(z=_surface_z(tf.u[i]))], traces=[0], layout=dict(title_text=title(i))
            )
            for i, s in enumerate(tf.steps)
        ],
    )
    sliders, menus = _frame_slider(tf.steps, tf.steps, prefix="step")
    fig.update_xaxes(range=[float(tf.x1[0]), float(tf.x1[-1])], title_text="x<sub>1</sub>", constrain="domain")
    fig.update_yaxes(range=[float(tf.x2[0]), float(tf.x2[-1])], title_text="x<sub>2</sub>", scaleanchor="x")
    return _layout(fig, title(0), height=650, sliders=sliders, updatemenus=menus)


def page_figures(pd: PackData) -> list[tuple[str, go.Figure | None, str]]:
    """(section title, figure or None, a note) of every view and instrument of one run, in page order."""
    v, out = pd.views, []
    path = pd.probe.xs if pd.probe is not None else None
    for title, fn, marks in VIEWS:
        if fn is lifted and v.lifted is None:
            continue
        if fn is folding and v.folding is None:
            continue
        fig = fn(v, probe_path=path) if marks and path is not None else fn(v)
        out.append((title, fig, "the probe's path is marked (★ its point x_k)" if marks and path is not None else ""))
    if pd.probe is not None:
        x0 = pd.probe_at
        out.append(
            (
                "Instrument: probe",
                probe(pd.probe, data_points=v.data),
                f"the characteristic from x_0 = ({x0[0]:.3g}, {x0[1]:.3g}), the scenario's probe point",
            )
        )
    elif "probe" in pd.notes:
        out.append(("Instrument: probe", None, pd.notes["probe"]))
    for name, title, fn in INSTRUMENTS:
        if name in pd.instruments:
            out.append((title, fn(pd.instruments[name]), ""))
        elif name in pd.notes:
            out.append((title, None, pd.notes[name]))
    if pd.training is not None:
        out.append(
            (
                "Training checkpoints",
                training_figure(pd.training, v.data),
                f"{len(pd.training.steps)} kept steps of training",
            )
        )
    return out


def _anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")


def _json_script(doc: dict) -> str:
    """A JSON document in a script tag: '</' escaped so no value can end the tag."""
    return json.dumps(doc, indent=1).replace("</", "<\\/")


def scenario_html(pd: PackData, *, title: str, description: str, meta: dict, present: bool = True) -> str:
    """One self-contained page: header (title, text, formula, the run's link and metrics), then each figure."""
    cfg = pd.views.config
    sections = page_figures(pd)
    e = html.escape
    head = [
        f"<h1>{e(title)}</h1>",
        f"<p>{e(description)}</p>" if description else "",
        f'<p class="formula">{e(formula(cfg))}</p>',
        f'<p class="caption">Reopen the live run: <a href="{e(meta["link"], quote=True)}">{e(meta["link"])}</a>'
        f" · config key {e(meta['key'])}</p>",
    ]
    m = meta.get("metrics") or {}
    if m:
        shown = [
            f"{k.replace('_', ' ')} {m[k]:.4g}"
            for k in ("train_accuracy", "test_accuracy", "train_loss", "test_loss")
            if isinstance(m.get(k), (int, float))
        ]
        head.append(f'<p class="metrics">{e(" · ".join(shown))}</p>')
    nav = " ".join(f'<a href="#{_anchor(t)}">{e(t)}</a>' for t, _, _ in sections)
    body, scripts = [], []
    for t, fig, note in sections:
        body.append(f'<section id="{_anchor(t)}"><h2>{e(t)}</h2>')
        if note:
            body.append(f'<p class="{"note" if fig is None else "caption"}">{e(note)}</p>')
        if fig is not None:
            fig = presentation(fig) if present else fig
            div, js = _split(
                fig.to_html(
                    full_html=False,
                    include_plotlyjs=False,
                    include_mathjax=False,
                    auto_play=False,
                    div_id=f"fig-{_anchor(t)}",
                    config=dict(displaylogo=False, responsive=True),
                )
            )
            body.append(div)
            scripts.append(js)
        body.append("</section>")
    return _document(
        f"flowviz · {title}", meta, "\n".join(head) + f"\n<nav>{nav}</nav>\n" + "\n".join(body), scripts=scripts
    )


def _split(fig_html: str) -> tuple[str, str]:
    """A figure's HTML (plotly's ``to_html(full_html=False)``) as its div and the code of its one script."""
    m = re.search(r"<script[^>]*>(.*)</script>", fig_html, re.S)
    return fig_html[: m.start()] + fig_html[m.end() :], m.group(1)


# Unpacks the page's code (plotly.js, then each figure's script) and runs it, in order. The code is inlined gzip
# (base64): plotly.js alone is 4.8 MB as text and 1.5 MB packed, so a page with every view keeps under 8 MB.
LOADER = """
(async () => {
  const say = t => { const p = document.getElementById("flowviz-loading"); if (p) p.textContent = t; };
  try {
    const b = atob(document.getElementById("flowviz-code").textContent.trim());
    const bytes = new Uint8Array(b.length);
    for (let i = 0; i < b.length; i++) bytes[i] = b.charCodeAt(i);
    const code = await new Response(new Blob([bytes]).stream().pipeThrough(new DecompressionStream("gzip"))).text();
    const s = document.createElement("script");
    s.text = code;
    document.head.appendChild(s);
    say("");
  } catch (err) {
    say("This browser cannot unpack the figures (it needs DecompressionStream: Chrome 80, Firefox 113, " +
        "Safari 16.4 or later).");
    throw err;
  }
})();
"""


def _code(scripts: list[str]) -> str:
    """plotly.js and the figures' scripts (each on its own: one that fails leaves the others), gzip, base64."""
    js = [plotly.offline.get_plotlyjs()] + [f"try {{{s}}} catch (e) {{ console.error(e); }}" for s in scripts]
    return base64.b64encode(gzip.compress("\n;\n".join(js).encode(), 9, mtime=0)).decode()


def _document(title: str, meta: dict | None, body: str, *, scripts: list[str] | None = None) -> str:
    """A whole page: metadata (the run's link and config), style, ``body``, and with ``scripts`` the packed code
    and its loader at the end (the figures' divs exist when it runs)."""
    e = html.escape
    tags = ""
    if meta is not None:
        tags = (
            f'<meta name="flowviz-link" content="{e(meta["link"], quote=True)}">\n'
            f'<meta name="flowviz-config" content="{e(json.dumps(meta["config"]), quote=True)}">\n'
            f'<script type="application/json" id="flowviz-run">{_json_script(meta)}</script>\n'
        )
    code = ""
    if scripts is not None:
        body = '<p id="flowviz-loading" class="note">Unpacking the figures…</p>\n' + body
        code = (
            f'\n<script type="application/gzip;base64" id="flowviz-code">{_code(scripts)}</script>\n'
            f"<script>{LOADER}</script>"
        )
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">\n<title>{e(title)}</title>\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n{tags}<style>{CSS}</style>\n'
        f"</head><body>\n{body}{code}\n</body></html>\n"
    )


def index_html(entries: list[dict]) -> str:
    """The pack's front page: one item per page (``file``, ``title``, ``description``, ``meta``, ``bytes``)."""
    e = html.escape
    items = []
    for en in entries:
        m = en["meta"].get("metrics") or {}
        acc = f" · test accuracy {m['test_accuracy']:.3f}" if isinstance(m.get("test_accuracy"), (int, float)) else ""
        items.append(
            f'<li><a href="{e(en["file"], quote=True)}"><b>{e(en["title"])}</b></a> '
            f'<span class="caption">({en["bytes"] / 1e6:.1f} MB{acc})</span><br>{e(en["description"])}'
            f'<br><span class="caption">live run: {e(en["meta"]["link"])}</span></li>'
        )
    runs = [en["meta"] for en in entries]
    body = (
        "<h1>flowviz — a residual network is a flow: the lecture pack</h1>\n<p>Each page is self-contained: it "
        "opens from disk, with no network. Press ▶ under a figure to play its layers.</p>\n"
        f'<ul class="runs">{"".join(items)}</ul>\n'
        f'<script type="application/json" id="flowviz-pack">{_json_script({"runs": runs})}</script>'
    )
    return _document("flowviz · lecture pack", None, body)


def pack_files(pages: list[dict], *, present: bool = True) -> dict[str, str]:
    """The pack as files (name -> HTML): ``NAME.html`` for each page (``name``, ``data`` a PackData, ``title``,
    ``description``, ``meta``), then ``index.html`` linking them."""
    files, entries = {}, []
    for p in pages:
        name = f"{p['name']}.html"
        files[name] = scenario_html(
            p["data"], title=p["title"], description=p["description"], meta=p["meta"], present=present
        )
        entries.append(
            dict(
                file=name,
                title=p["title"],
                description=p["description"],
                meta=p["meta"],
                bytes=len(files[name].encode()),
            )
        )
    files["index.html"] = index_html(entries)
    return files


def pack_zip(files: dict[str, str | bytes]) -> bytes:
    """The pack's files (name -> text) as one zip."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in files.items():
            z.writestr(name, text.encode() if isinstance(text, str) else text)
    return buf.getvalue()
