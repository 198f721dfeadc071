"""The partition 0 = t_0 < ... < t_L = T and how weights depend on time.

The weights of every field are stored stacked over K "slots" (tensors of
shape (K, ...)). The weights used at a time t are a fixed linear combination
of the slots, ``w(t) = sum_j P[t, j] theta_j``; P depends only on the time
mode:

- ``per_step``: K = L, one slot per block (the classic ResNet). On the step
  (t_(k-1), t_k] the field uses slot k, so all stages of a Runge-Kutta step
  see the same weights: the field is piecewise constant in t.
- ``tied``: K = 1, one set for all t (an autonomous field).
- ``continuous``: K knots tau_j = j T / (K - 1); the weights are the
  piecewise-linear interpolant in t (hat functions), so the same field can be
  discretised with any L afterwards.
"""

from __future__ import annotations

import numpy as np

__all__ = ["partition", "n_slots", "weight_matrix", "slot_of_time"]


def partition(horizon: float, n_steps: int, kind: str = "uniform", ratio: float = 1.0) -> np.ndarray:
    """Times t_0 .. t_L (shape (L+1,), float64). ``geometric``: s_(k+1) = ratio * s_k, sum s_k = T."""
    if kind == "uniform" or ratio == 1.0:
        s = np.full(n_steps, horizon / n_steps)
    elif kind == "geometric":
        s = ratio ** np.arange(n_steps, dtype=np.float64)
        s = s * horizon / s.sum()
    else:
        raise ValueError(f"unknown partition {kind!r}; valid: uniform, geometric")
    t = np.concatenate([[0.0], np.cumsum(s)])
    t[-1] = horizon
    return t


def n_slots(time_mode: str, n_steps: int, knots: int) -> int:
    """K, the number of stacked weight slots for a time mode."""
    return {"per_step": n_steps, "tied": 1, "continuous": knots}[time_mode]


def weight_matrix(time_mode: str, times: np.ndarray, stage_c: tuple[float, ...], n_knots: int) -> np.ndarray:
    """P of shape (L * S, K): row k*S + i gives the weights of stage i of step k+1.

    ``stage_c`` are the stage fractions c_i in [0, 1] of the stepper: stage i of
    step k is evaluated at t_(k-1) + c_i s_k.
    """
    L, S = len(times) - 1, len(stage_c)
    if time_mode == "per_step":
        P = np.repeat(np.eye(L), S, axis=0)
    elif time_mode == "tied":
        P = np.ones((L * S, 1))
    elif time_mode == "continuous":
        t = np.array([times[k] + c * (times[k + 1] - times[k]) for k in range(L) for c in stage_c])
        P = hat_matrix(t, times[-1], n_knots)
    else:
        raise ValueError(f"unknown time mode {time_mode!r}; valid: per_step, tied, continuous")
    return P


def hat_matrix(t: np.ndarray, horizon: float, n_knots: int) -> np.ndarray:
    """Linear interpolation weights of times t (shape (N,)) on K uniform knots over [0, T]: (N, K)."""
    u = np.clip(np.asarray(t, dtype=np.float64) / horizon, 0.0, 1.0) * (n_knots - 1)
    j = np.minimum(np.floor(u).astype(int), n_knots - 2)
    frac = u - j
    P = np.zeros((len(u), n_knots))
    P[np.arange(len(u)), j] = 1 - frac
    P[np.arange(len(u)), j + 1] += frac
    return P


def slot_of_time(time_mode: str, t: float, times: np.ndarray, n_knots: int) -> np.ndarray:
    """Row of P for an arbitrary time t (used by the reference solver): shape (K,).

    For per_step weights the field at t in (t_(k-1), t_k] uses slot k.
    """
    L = len(times) - 1
    if time_mode == "per_step":
        k = int(np.clip(np.searchsorted(times[1:], t, side="left"), 0, L - 1))
        row = np.zeros(L)
        row[k] = 1.0
        return row
    if time_mode == "tied":
        return np.ones(1)
    hat: np.ndarray = hat_matrix(np.array([t]), times[-1], n_knots)[0]
    return hat


MIN_STEP_ULPS = 8  # a step must span at least this many float32 units in the last place at its end


def unresolved_step(horizon: float, n_steps: int, kind: str = "uniform", ratio: float = 1.0) -> str | None:
    """Why float32 cannot resolve this partition (None if it can).

    Training stores times and steps in float32: a step s_k smaller than a few units in the last place of t_k
    (a geometric partition with ratio 0.1 over 256 steps has s_min = 1e-255 T) makes neighbouring times
    equal, and the solvers then fail after training. Checked at config time instead.
    """
    t32 = partition(horizon, n_steps, kind, ratio).astype(np.float32)
    s = np.diff(t32.astype(np.float64))
    need = np.maximum(MIN_STEP_ULPS * np.spacing(np.abs(t32[1:])), np.finfo(np.float32).tiny)
    bad = np.nonzero(~(s >= need))[0]
    if not len(bad):
        return None
    k = int(bad[0])
    exact = partition(horizon, n_steps, kind, ratio)
    step = f"{exact[k + 1] - exact[k]:.3g}"
    return (
        f"step {k + 1} of this partition is {step} long at t = {exact[k + 1]:.4g}, finer than float32 can "
        f"resolve there (at least {float(need[k]):.3g}); use fewer steps, a ratio closer to 1, or a larger "
        f"horizon"
    )
