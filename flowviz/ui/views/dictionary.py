"""The Dictionary view: the paper's Table 1 (assets/dictionary.md), with the sentences that depend on the run
filled in for the current config, so each one is true of what is on the screen.

Which sentence holds where (each backed by a test in tests/unit/test_wording.py):
- the block is eq. 10's forward-Euler step only for scheme = euler; midpoint and rk4 get their tableau's step;
- u constant along a characteristic, "the colour under a point never changes": only with eps = 0 and p = 0;
- with p > 0 it holds in R^(2+p), not on the slice x_3 = 0 that a planar picture shows;
- with eps > 0, u(t, X_t) is a martingale along a stochastic characteristic, not a constant.
"""

from __future__ import annotations

from fractions import Fraction
from functools import cache

from ...core.assets import ASSETS
from ...core.config import Config
from ...core.model import trained_loss
from ...core.solvers import STEPPERS

__all__ = ["DICTIONARY_FILE", "dictionary", "fills"]

DICTIONARY_FILE = ASSETS / "dictionary.md"

VISCOUS_EQUATION = (
    "∂_t u + v·∇u + ε Δu = 0, u(T, ·) = f; its characteristics are stochastic, "
    "dX = v dt + √(2ε) dW, and u(0, x) = E[f(X_T)] (Feynman–Kac)"
)
READING = (
    "flowviz's reading of the paper's section 4, item 1 (\"adding dissipative terms\"): the paper names the "
    "idea and gives no equation"
)

LEARNING = {  # keyed by config.head
    "fixed": "the inverse problem (paper, section 4, item 2): f = u(T, ·) is fixed (head = fixed, this run); "
    "training finds the v that carries the samples' initial values to it",
    "learned": "the inverse problem with the terminal value fitted too: this run has head = learned, so training "
    "finds v and the output layer f together (the paper's inverse problem fixes f: head = fixed)",
}
RK_STEP = "x_k = x_(k-1) + s_k Σ_i b_i K_i with stages K_i = v(t_(k-1) + c_i s_k, x_(k-1) + s_k Σ_(j<i) a_ij K_j)"
SCHEME_NAMES = {"midpoint": "the explicit midpoint rule", "rk4": "Kutta's 3/8 rule"}
BLOCK = {  # keyed by config.scheme; midpoint and rk4 are filled from their tableau by _rk_block
    "euler": "A residual block x_k = x_(k-1) + s_k V_k(x_(k-1)) is one forward-Euler step of the ODE "
    "x' = v(t, x) (eq. 10), with V_k = v(t_k, ·): the field at time t_k and the point x_(k-1); it is the "
    f"one-stage case c_1 = 1, b_1 = 1 of the Runge–Kutta step {RK_STEP}. With the paper's field (eq. 2) "
    "it is exactly the two-layer block of eq. 17.",
    "plain": "This run is a plain net, x_k = V_k(x_(k-1)), without the shortcut. The paper says the correspondence "
    '"also exists in plain nets" (section 3.4); flowviz reads it so: layer k is still time t_k, but a '
    "plain block is a map, not a small step. Written as x_k = x_(k-1) + s_k (V_k(x_(k-1)) − x_(k-1)) / s_k "
    "it is an Euler step of the field (V_k(x) − x) / s_k, whose step V_k(x) − x is not small: the "
    "**Velocity field** view draws that displacement, and section 3.3's first condition fails.",
}


def _num(x: float) -> str:
    return str(Fraction(x).limit_denominator(1000))


def _rk_block(cfg: Config) -> str:
    """The block sentence of a multi-stage scheme, with its tableau's numbers."""
    scheme = cfg.scheme
    tab = STEPPERS[scheme]
    c = ", ".join(_num(v) for v in tab.c)
    a = ", ".join(f"a_{i + 1}{j + 1} = {_num(v)}" for i, row in enumerate(tab.a) for j, v in enumerate(row) if v)
    b = ", ".join(_num(v) for v in tab.b)
    return (
        f"This run's residual block is one step of {SCHEME_NAMES[scheme]} (order {tab.order}) for the ODE "
        f"x' = v(t, x): {RK_STEP}, here with c = ({c}), {a}, b = ({b}): {tab.stages} evaluations of the field "
        "per block. The paper's eq. 10, the forward-Euler block x_k = x_(k-1) + s_k V_k(x_(k-1)), is the "
        "one-stage case c_1 = 1, b_1 = 1, not this run's block."
        + (
            " With per-step weights every stage of block k uses block k's weights: at c_i = 0 the field is the "
            "limit from inside the step, v(t_(k-1)⁺, ·)."
            if cfg.time_mode == "per_step"
            else ""
        )
    )


def _characteristics(cfg: Config) -> str:
    if cfg.viscosity > 0:
        return (
            "With viscosity ε > 0 the value is **not** constant along a path: along a stochastic characteristic "
            "X_t the process u(t, X_t) is a martingale (its expectation stays u(0, x_0), each sample path "
            "wanders), so the colour under a moving point can change."
        )
    if cfg.lift > 0:
        return (
            f"The transported value u is constant along each path in R^{cfg.dim}, where the flow acts: "
            f"u(t_k, x_k) = F(x_0). It is **not** constant on the slice x_3 = 0 that a planar picture shows, "
            "because the points leave that slice; the planar views therefore colour each point by its own "
            "u(t_k, x_k), and the **Lifted space** view shows the points and the boundary in 3-D."
        )
    return (
        "The transported value u is constant along each path, so the colour under a point never changes as it "
        "moves: that is the method of characteristics."
    )


def fills(cfg: Config) -> dict[str, str]:
    """The run-dependent sentences of assets/dictionary.md for ``cfg``."""
    viscous = cfg.viscosity > 0
    return {
        "feed_forward": (
            "sampling the stochastic characteristic dX = v dt + √(2ε) dW"
            if viscous
            else "solving the characteristic IVP x' = v(t, x)"
        ),
        "lifted_view": "; in 3-D, the **Lifted space** view" if cfg.lift > 0 else "",
        "prediction": (
            f"solving the viscous TVP ∂_t u + v·∇u + ε Δu = 0 with ε = {cfg.viscosity:g} (flowviz's reading)"
            if viscous
            else "solving the transport TVP ∂_t u + v·∇u = 0"
        ),
        "learning": LEARNING[cfg.head],
        "block": BLOCK[cfg.scheme] if cfg.scheme in BLOCK else _rk_block(cfg),
        "characteristics": _characteristics(cfg),
        "viscosity": (
            f"Viscosity: {VISCOUS_EQUATION}; in the blocks each step adds √(2ε s_k) ξ, ξ standard normal, "
            f"and u(0, x) is the mean over M sample paths. This is {READING}. "
            f"This run: ε = {cfg.viscosity:g}. Training minimises {trained_loss(cfg)}."
        ),
        "lift": (
            "Lift: the points get p extra zero coordinates and the flow acts in R^(2+p). The paper's footnote 1 "
            "only says that layers of equal width can be embedded in one higher-dimensional space; that two "
            "nested rings *need* the extra dimension (a planar flow is a homeomorphism, so the region a linear "
            "f calls inner is unbounded: a keyhole) is the augmented neural ODE argument of Dupont, Doucet & "
            f"Teh (2019). This run: p = {cfg.lift}."
        ),
    }


@cache
def _template() -> str:
    return DICTIONARY_FILE.read_text(encoding="utf-8")


def dictionary(cfg: Config) -> str:
    """The Dictionary view's Markdown for this run's config, in ASCII notation (the page typesets it)."""
    return _template().format_map(fills(cfg))
