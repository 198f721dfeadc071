"""The sidebar: widgets that return plain values, and the config they make."""

from __future__ import annotations

from contextvars import ContextVar

import streamlit as st

from ..core.config import CHOICES, Config, value_range
from ..core.errors import FlowvizError
from ..plots.notation import typeset

DATASET_HELP = {
    "moons": "two interleaving half circles",
    "circles": "two concentric circles",
    "rings": "a disk inside an annulus: needs a lift (p ≥ 1) to avoid a keyhole",
    "spirals": "interleaved spiral arms (choose the number of arms)",
    "xor": "four quadrants, opposite ones alike",
    "checkerboard": "a 4 x 4 board",
    "blobs": "k Gaussian blobs (choose k)",
    "csv": "your own points: upload a CSV with columns x1, x2, label",
}
FIELD_HELP = {
    "two_layer": "the paper's eq. 2: v = W₂(t) a(W₁(t) x + b₁(t)) + b₂(t)",
    "mlp": "a general MLP field with t as an input",
    "antisymmetric": "Haber & Ruthotto: a((K − Kᵀ − γI) x + b); its linear part K − Kᵀ − γI has eigenvalues "
    "with real part −γ; forward Euler with small γ can still grow (|1 + sλ| > 1)",
}
TIME_HELP = {
    "per_step": "per-step: independent weights per block (a classic ResNet)",
    "tied": "tied: one set of weights for all t (an autonomous field)",
    "continuous": "continuous: weights piecewise linear in t through K knots",
}


# the sidebar widgets' key suffix, one per config change under the sidebar (``PageState.widget_gen``): new keys are
# new widgets, so a value the browser still holds for the old ones is never read back as the user's choice
_SUFFIX: ContextVar[str] = ContextVar("widget_suffix", default="")


def widget_key(key: str, gen: int = 0) -> str:
    """The key of the sidebar widget of config key ``key`` in widget generation ``gen``."""
    return f"w_{key}" + (f"~{gen}" if gen else "")


def group_key(name: str) -> str:
    """The session-state key of a folded sidebar group's expander (True while it is open)."""
    return f"g_{name}"


def _meta(key):
    return Config.__dataclass_fields__[key].metadata


def _num(container, label, key, cfg, *, step=None, fmt=None):
    """A number box whose range is the config's own (``value_range``: one place for both)."""
    lo, hi = value_range(key)
    v = getattr(cfg, key)
    if isinstance(v, int):
        return container.number_input(
            label, lo, hi, v, step=step or 1, help=typeset(_meta(key)["help"]), key=f"w_{key}{_SUFFIX.get()}"
        )
    # %g shows 1e-09 and 5e-324 as such (a fixed number of decimals showed them as 0)
    return container.number_input(
        label,
        lo,
        hi,
        float(v),
        step=step or 0.01,
        format=fmt or "%.4g",
        help=typeset(_meta(key)["help"]),
        key=f"w_{key}{_SUFFIX.get()}",
    )


def _pick(container, label, key, cfg, names=None, fmt=None):
    options = list(CHOICES[key])
    cur = getattr(cfg, key)
    return container.selectbox(
        label,
        options,
        index=options.index(cur),
        help=typeset(_meta(key)["help"]),
        format_func=(lambda o: (names or {}).get(o, o)) if names else (fmt or str),
        key=f"w_{key}{_SUFFIX.get()}",
    )


def sidebar(
    cfg: Config,
    *,
    has_csv: bool,
    hidden: frozenset = frozenset(),
    csv_label: str | None = None,
    gen: int = 0,
    fold: bool = True,
) -> dict:
    """Draw the grouped controls, seeded from ``cfg``; return the chosen values (not yet validated).

    Groups named in ``hidden`` (see ``links.GROUPS``) are not drawn; their keys keep the values of ``cfg``. So
    are the widgets of a group folded by default while it is closed, with ``fold`` (``group_key``: it reruns the
    page when opened), so that a page's first picture does not wait for widgets nobody sees.
    ``csv_label``: how the dataset list names the csv data (drawn points: "drawn (14)"); ``gen``: the widgets'
    generation (their keys: ``widget_key``).
    """
    v: dict = {}
    token = _SUFFIX.set(widget_key("", gen)[2:])
    try:
        for name, label, expanded, draw in _GROUP_TABLE:
            if name in hidden:
                continue
            lazy = {"key": group_key(name), "on_change": "rerun"} if fold and not expanded else {}
            box = st.sidebar.expander(label, expanded=expanded, **lazy)
            if box.open is not False:
                with box:
                    draw(cfg, v, has_csv) if name != "data" else draw(cfg, v, has_csv, csv_label)
    finally:
        _SUFFIX.reset(token)
    return v


def _data_group(cfg, v, has_csv, csv_label=None):
    v["dataset"] = _pick(
        st,
        "Dataset",
        "dataset",
        cfg,
        fmt=lambda o: csv_label if o == "csv" and csv_label else f"{o} — {DATASET_HELP[o]}",
    )
    if v["dataset"] == "csv" and not has_csv:
        st.info("Upload a CSV below to use your own points.")
    v["n_samples"] = _num(st, "Samples", "n_samples", cfg, step=100)
    v["noise"] = _num(st, "Noise", "noise", cfg, step=0.05)
    if v["dataset"] in ("spirals", "blobs"):
        v["n_classes"] = _num(st, "Classes (arms / blobs)", "n_classes", cfg)
    v["test_fraction"] = _num(st, "Test fraction", "test_fraction", cfg, step=0.05)
    v["seed"] = _num(st, "Seed", "seed", cfg)


def _field_group(cfg, v, has_csv):
    v["field"] = _pick(st, "Family", "field", cfg, fmt=lambda o: f"{o} — {FIELD_HELP[o]}")
    v["width"] = _num(st, "Hidden width", "width", cfg)
    v["activation"] = _pick(st, "Activation a", "activation", cfg)
    v["time_mode"] = _pick(st, "Time dependence", "time_mode", cfg, fmt=lambda o: TIME_HELP[o])
    if v["time_mode"] == "continuous":
        v["knots"] = _num(st, "Knots K", "knots", cfg)
    v["lift"] = _num(st, "Extra dimensions p (lift to ℝ²⁺ᵖ)", "lift", cfg)


def _disc_group(cfg, v, has_csv):
    v["horizon"] = _num(st, "Horizon T", "horizon", cfg, step=0.5)
    v["n_steps"] = _num(st, "Steps L (blocks)", "n_steps", cfg)
    v["scheme"] = _pick(
        st,
        "Scheme",
        "scheme",
        cfg,
        fmt=lambda o: {
            "euler": "euler — the paper's rule, eq. 10",
            "midpoint": "midpoint (order 2)",
            "rk4": "rk4 (order 4)",
            "plain": "plain net — no shortcut: each block a map x ↦ Vₖ(x), not a small step",
        }[o],
    )
    v["partition"] = _pick(st, "Partition", "partition", cfg)
    if v["partition"] == "geometric":
        v["partition_ratio"] = _num(st, "Ratio sₖ₊₁ / sₖ", "partition_ratio", cfg, step=0.05)


def _head_group(cfg, v, has_csv):
    v["head"] = _pick(
        st,
        "Output layer",
        "head",
        cfg,
        fmt=lambda o: {"learned": "learned linear softmax", "fixed": "fixed: the flow alone must sort the classes"}[o],
    )


def _training_group(cfg, v, has_csv):
    v["optimizer"] = _pick(st, "Optimiser", "optimizer", cfg)
    v["lr"] = _num(st, "Learning rate", "lr", cfg, step=0.005)
    v["train_steps"] = _num(st, "Training steps", "train_steps", cfg, step=100)
    v["batch_size"] = _num(st, "Batch size (0 = full batch)", "batch_size", cfg, step=32)
    v["weight_decay"] = _num(st, "Weight decay", "weight_decay", cfg, step=0.001)
    v["smoothness"] = _num(st, "Smoothness penalty λ", "smoothness", cfg, step=0.01)
    v["kinetic"] = _num(st, "Kinetic-energy penalty", "kinetic", cfg, step=0.01)
    v["viscosity"] = _num(st, "Viscosity ε", "viscosity", cfg, step=0.01)
    if v["viscosity"] > 0:
        v["mc_samples"] = _num(st, "Monte-Carlo samples M", "mc_samples", cfg)
    v["device"] = _pick(st, "Device", "device", cfg)


_GROUP_TABLE = [
    ("data", "Data", True, _data_group),
    ("field", "Velocity field v(t, x)", True, _field_group),
    ("discretisation", "Discretisation", True, _disc_group),
    ("head", "Terminal function f = u(T, ·)", False, _head_group),
    ("training", "Training", False, _training_group),
]


def make_config(values: dict, base: Config) -> tuple[Config | None, str | None]:
    """Validate the widget values on top of ``base``; (config, None) or (None, message)."""
    try:
        return base.replace(**values), None
    except FlowvizError as e:
        return None, str(e)


# LaTeX of each activation (every name in CHOICES["activation"]; an underscore left bare would render a subscript)
ACTIVATION_TEX = {
    "relu": r"\mathrm{relu}",
    "tanh": r"\tanh",
    "sigmoid": r"\sigma",
    "softplus": r"\mathrm{softplus}",
    "leaky_relu": r"\mathrm{leaky\_relu}",
}
# flowviz's reading of the paper's section 4, item 1 (the paper gives no equation)
VISCOUS_TEX = (
    r"\partial_t u + v\cdot\nabla u + \varepsilon\,\Delta u = 0,\; u(T,\cdot) = f;\quad "
    r"dX = v\,dt + \sqrt{2\varepsilon}\,dW,\; u(0,x) = \mathbb{E}\,f(X_T)\;\text{(Feynman--Kac; "
    r"flowviz's reading of the paper's \S 4, item 1)}"
)


def block_formula(cfg: Config) -> str:
    """LaTeX of the chosen block, with the step size filled in; with viscosity, the noise term and the viscous
    equation it discretises."""
    s = f"{cfg.horizon / cfg.n_steps:.4g}"
    if "e" in s:  # 2.5e-31 as 2.5 x 10^-31 (LaTeX set "e-31" as a subtraction)
        m, e = s.split("e")
        s = rf"{m} \times 10^{{{int(e)}}}"
    sk = f"s_k = T/L = {s}" if cfg.partition == "uniform" else r"s_k \text{ (geometric)}"
    a = ACTIVATION_TEX[cfg.activation]
    v = {
        "two_layer": rf"W^{{(2)}}_k\,{a}\!\left(W^{{(1)}}_k x_{{k-1}} + b^{{(1)}}_k\right) + b^{{(2)}}_k",
        "mlp": r"\mathrm{MLP}_k(x_{k-1}, t_k)",
        "antisymmetric": rf"{a}\!\left((K_k - K_k^\top - \gamma I)\,x_{{k-1}} + b_k\right)",
    }[cfg.field]
    noise = r" + \sqrt{2\varepsilon s_k}\,\xi_k" if cfg.viscosity > 0 else ""
    if cfg.scheme == "plain":
        block = rf"x_k = {v}{noise}" + r"\qquad\text{(plain net: no shortcut; a block is a map, not a small step)}"
    elif cfg.scheme == "euler":
        block = rf"x_k = x_{{k-1}} + s_k\left[{v}\right]{noise},\qquad {sk}"
    else:
        stages = r"K_i = v\big(t_{k-1} + c_i s_k,\; x_{k-1} + s_k \textstyle\sum_{j<i} a_{ij} K_j\big)"
        block = rf"x_k = x_{{k-1}} + s_k \sum_i b_i K_i{noise} \;\; ({cfg.scheme}),\quad {stages},\;{sk}"
    if cfg.viscosity == 0:
        return block
    eps = rf"\varepsilon = {cfg.viscosity:g},\; \xi_k \sim N(0, I)"
    return rf"\begin{{gathered}}{block},\; {eps}\\ {VISCOUS_TEX}\end{{gathered}}"
