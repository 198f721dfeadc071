"""The flow model: lift, velocity field, time stepping and terminal function f.

F = f o Phi_(0->L) o lift, where Phi is the discrete flow of the chosen
stepper on the partition (paper, eq. 13). The model knows nothing about
training.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import wraps
from typing import Any, Concatenate, ParamSpec

import numpy as np
import torch
from torch import Tensor, nn

from .config import Config
from .errors import ConfigError
from .fastpath import euler_two_layer
from .fields import FIELDS
from .solvers import REFERENCE_ATOL, REFERENCE_RTOL, STEPPERS, Tableau, integrate, reference_solution
from .threads import threads_that_pay
from .timegrid import n_slots, partition, slot_of_time, weight_matrix

__all__ = ["FlowModel", "build_model", "trained_loss"]

# the plain (non-residual) net evaluates its block at t_k and drops the shortcut
_GRID_BUFFERS = ("P", "s", "P_blocks")  # derived from the config, not learned
_PLAIN = Tableau(c=(1.0,), a=((),), b=(1.0,), order=0)
# Above this many bytes of activations, training recomputes each step in the backward (torch.utils.checkpoint)
# rather than keeping them: the largest configs the limits allow stay within 2 GB (bench/memory.py).
GENERIC_BUDGET = 256 * 2**20

_P = ParamSpec("_P")
MCFn = Callable[[Tensor, torch.Generator | None], Tensor]  # (points, noise generator) -> f(X_T)


def _array_io(
    fn: Callable[Concatenate[FlowModel, Tensor, _P], Tensor],
) -> Callable[Concatenate[FlowModel, Any, _P], Any]:
    """Accept numpy or torch input; return the same kind (numpy float32 for numpy input)."""

    @wraps(fn)
    def wrapper(self: FlowModel, x: Any, *args: _P.args, **kwargs: _P.kwargs) -> Any:
        is_np = not isinstance(x, Tensor)
        xt = torch.as_tensor(np.asarray(x) if is_np else x).to(self.device, self.P.dtype)
        with torch.no_grad():
            out = fn(self, xt, *args, **kwargs)
        return out.cpu().numpy() if is_np else out

    return wrapper


class FlowModel(nn.Module):
    """A residual network read as a discretised flow on R^d, d = 2 + lift.

    Use :func:`build_model` (or ``flowviz.train``) rather than constructing directly.
    """

    # buffers (or, for a learned head, parameters) registered in __init__ and _set_grid_buffers
    P: Tensor
    s: Tensor
    P_blocks: Tensor
    head_W: Tensor
    head_b: Tensor

    def __init__(self, config: Config, n_classes: int) -> None:
        super().__init__()
        self.config = config
        self.n_classes = n_classes
        self.dim = d = config.dim
        gen = torch.Generator().manual_seed(config.seed + 1)
        slots = n_slots(config.time_mode, config.n_steps, config.knots)
        self.field = FIELDS[config.field](
            d,
            config.width,
            config.activation,
            slots,
            gen,
            depth=config.mlp_depth,
            time_input=config.time_input,
            gamma=config.gamma,
        )
        # terminal function f(x) = softmax(Wf x + bf): learned, or fixed rows on the unit circle
        if config.head == "learned":
            self.head_W = nn.Parameter((torch.rand(n_classes, d, generator=gen) * 2 - 1) / math.sqrt(d))
            self.head_b = nn.Parameter(torch.zeros(n_classes))
        else:
            ang = 2 * math.pi * torch.arange(n_classes) / n_classes
            W = torch.zeros(n_classes, d)
            W[:, 0], W[:, 1] = torch.cos(ang), torch.sin(ang)
            self.register_buffer("head_W", 2.0 * W)
            self.register_buffer("head_b", torch.zeros(n_classes))
        self.times = partition(config.horizon, config.n_steps, config.partition, config.partition_ratio)
        self.steps = np.diff(self.times)  # s_k, k = 1..L
        self.tab = _PLAIN if config.scheme == "plain" else STEPPERS[config.scheme]
        self._set_grid_buffers(torch.float32)
        self.fast = True  # use the hand-written Euler chain where it applies (see fastpath)

    def _set_grid_buffers(self, dtype: torch.dtype) -> None:
        """P (stage weights), s (steps) and P_blocks (weights at t_k), computed in float64, stored in dtype."""
        c = self.config
        P = weight_matrix(c.time_mode, self.times, self.tab.c, c.knots)
        rows = np.stack([slot_of_time(c.time_mode, t, self.times, c.knots) for t in self.times[1:]])
        dev = self.P.device if hasattr(self, "P") else None
        self.register_buffer("P", torch.as_tensor(P, dtype=dtype, device=dev))
        self.register_buffer("s", torch.as_tensor(self.steps, dtype=dtype, device=dev))
        self.register_buffer("P_blocks", torch.as_tensor(rows, dtype=dtype, device=dev))
        # per-step weights with one stage per step: P is the identity, and the stage weights are the slots
        self._P_identity = P.shape[0] == P.shape[1] and bool(np.array_equal(P, np.eye(P.shape[0])))

    # ---------------------------------------------------------------- basics
    @property
    def device(self) -> torch.device:
        return self.P.device

    @property
    def L(self) -> int:
        return self.config.n_steps

    def lift(self, x: Tensor) -> Tensor:
        """(n, 2) -> (n, 2 + p): append p zero coordinates (paper, footnote 1)."""
        p = self.dim - x.shape[1]
        return x if p == 0 else torch.cat([x, x.new_zeros(x.shape[0], p)], 1)

    def head(self, xL: Tensor) -> Tensor:
        """Logits of the terminal function f at points of the output space (n, d) -> (n, C)."""
        return torch.addmm(self.head_b, xL, self.head_W.T)

    def stage_params(self) -> list[Tensor]:
        """The field's parameters at every stage evaluation, one tensor (L*S, ...) per kind: P @ slots
        (the slots themselves when P is the identity, which saves a product and its gradient)."""
        if self._P_identity:
            return self.field.slot_params()
        return [torch.tensordot(self.P, p, dims=1) for p in self.field.slot_params()]

    def stage_weights(self) -> list[tuple[Tensor, ...]]:
        """Weights for every stage evaluation, row k*S + i = stage i of step k+1."""
        return self.field.weights(self.P)

    def block_params(self) -> list[Tensor]:
        """theta_k = the weights at t_k for k = 1..L, one tensor (L, ...) per parameter."""
        return [torch.tensordot(self.P_blocks, p, dims=1) for p in self.field.slot_params()]

    def fast_path_applies(self, *, training: bool = False) -> bool:
        """True where the hand-written Euler chain computes this model exactly."""
        c = self.config
        ok = self.fast and c.field == "two_layer" and c.scheme == "euler"
        return ok and not (training and (c.viscosity > 0 or c.kinetic > 0))

    # ----------------------------------------------------------------- flows
    def flow(
        self,
        x: Tensor,
        *,
        k0: int = 0,
        k1: int | None = None,
        record: bool = False,
        noise_gen: torch.Generator | None = None,
        training: bool = False,
        common_noise: bool = False,
    ) -> Tensor:
        """Apply blocks k0+1 .. k1 (k1 = L by default) to points x (n, d) of the space of step k0.

        Returns x_(k1) (n, d), or with ``record`` the positions x_(k0) .. x_(k1): (k1-k0+1, n, d).
        ``noise_gen`` adds the viscous noise sqrt(2 eps s_k) xi after each step (Euler-Maruyama for
        dX = v dt + sqrt(2 eps) dW); ``common_noise``: one xi per step shared by all n points, so x -> X_T(x)
        is one sample of the stochastic flow, a continuous map of x (used for every Monte-Carlo surface).
        """
        eps = self.config.viscosity
        k1 = self.L if k1 is None else k1
        if not record and noise_gen is None and (k0, k1) == (0, self.L) and self.fast_path_applies(training=training):
            W1, b1, W2, b2 = self.stage_params()
            return euler_two_layer(x, W1, b1, W2, b2, self.s, self.config.activation)
        ws = self.stage_weights()
        S = self.tab.stages
        plain = self.config.scheme == "plain"

        def f(k: int, i: int, t: float, xi: Tensor) -> Tensor:
            v = self.field.velocity(ws[(k + k0) * S + i], t, xi)
            return (v - xi) / float(self.steps[k + k0]) if plain else v  # plain: x + s (V - x)/s = V(x)

        noise: Callable[[int, float, Tensor], Tensor] | None = None
        if noise_gen is not None and eps > 0:
            # common: one increment (1, d) for every point, broadcast (common random numbers)
            def noise(k: int, s: float, xk: Tensor) -> Tensor:
                shape = (1, xk.shape[1]) if common_noise else xk.shape
                return math.sqrt(2 * eps * s) * torch.randn(
                    shape, generator=noise_gen, device=xk.device, dtype=xk.dtype
                )

        return integrate(
            f,
            x,
            self.times[k0 : k1 + 1],
            self.tab,
            record=record,
            noise=noise,
            checkpoint=training and self._activation_bytes(x.shape[0], k1 - k0) > GENERIC_BUDGET,
        )

    def _activation_bytes(self, n: int, steps: int) -> int:
        """What plain autograd would keep for ``steps`` steps of n points (a rough upper estimate)."""
        c = self.config
        per_eval = {"two_layer": 3 * c.width, "mlp": 3 * c.width * c.mlp_depth, "antisymmetric": 4 * self.dim}
        return 4 * n * steps * self.tab.stages * (per_eval[c.field] + 4 * self.dim)

    def forward(self, x: Tensor, *, noise_gen: torch.Generator | None = None) -> Tensor:
        """Logits F(x) for points x (n, 2): f o Phi_(0->L) o lift."""
        return self.head(self.flow(self.lift(x), noise_gen=noise_gen, training=self.training))

    def _mc_samples(self, fn: MCFn, x: Tensor) -> Tensor:
        """f(X_T) for each of the mc_samples seeded noise paths: (M, n, C); (1, n, C) when eps = 0.

        The paths are common random numbers: path m uses the same increments xi for every point, and the
        same M paths for every call, so u(t_k, x) is a smooth function of x and does not depend on which
        other points are evaluated with it.
        """
        if self.config.viscosity == 0:
            return fn(x, None)[None]
        gen = torch.Generator(device=self.device).manual_seed(self.config.seed + 7)
        return torch.stack([fn(x, gen) for _ in range(self.config.mc_samples)])

    def _mc(self, fn: MCFn, x: Tensor) -> Tensor:
        """u = E f(X_T): the mean over the Monte-Carlo paths of :meth:`_mc_samples` (one pass when eps = 0)."""
        return self._mc_samples(fn, x).mean(0)

    def _u_fn(self, k: int) -> MCFn:
        return lambda z, g: torch.softmax(self.head(self.flow(z, k0=k, noise_gen=g, common_noise=True)), -1)

    @_array_io
    def monte_carlo(self, x: Tensor, k: int = 0) -> Tensor:
        """u(t_k, x) and its Monte-Carlo standard error at points x (n, d) of step k: shape (2, n, classes).

        Row 0 is the mean over the M = mc_samples paths (what :meth:`transported` returns), row 1 is
        std / sqrt(M) (the sample standard deviation over the paths); both rows are exact (error 0) when eps = 0.
        """
        if not 0 <= k <= self.L:
            raise ConfigError(f"step k={k} is out of range: 0 <= k <= {self.L}")
        f = self._mc_samples(self._u_fn(k), self.lift(x))  # (M, n, C)
        M = f.shape[0]
        se = f.std(0) / math.sqrt(M) if M > 1 else torch.zeros_like(f[0])
        return torch.stack([f.mean(0), se])

    def trained_loss(self) -> str:
        """Which loss training minimises, in words (the page and the README quote it): see :func:`trained_loss`."""
        return trained_loss(self.config)

    # ------------------------------------------------------- public surface
    @_array_io
    def trajectory(self, x: Tensor, *, noise: bool = True) -> Tensor:
        """The characteristics x_0 .. x_L of points x (n, 2): shape (L+1, n, d), lift applied inside.

        With viscosity eps > 0, one seeded sample path of the stochastic characteristics (each point its own
        noise); ``noise=False`` gives the drift alone, x_k = Phi_k(x_(k-1)), the characteristics of v.
        """
        gen = None
        if self.config.viscosity > 0 and noise:
            gen = torch.Generator(device=self.device).manual_seed(self.config.seed + 7)
        return self.flow(self.lift(x), record=True, noise_gen=gen)

    @_array_io
    def predict_proba(self, x: Tensor) -> Tensor:
        """Class probabilities F(x) = u(0, x) for points x (n, 2): shape (n, classes)."""
        return self._mc(self._u_fn(0), self.lift(x))

    @_array_io
    def transported(self, x: Tensor, k: int) -> Tensor:
        """u(t_k, x) = f(Phi_(k->L)(x)) for points x (n, d) of the space of step k: shape (n, classes).

        k = L gives f itself; k = 0 gives the decision function F (on lifted inputs).
        """
        if not 0 <= k <= self.L:
            raise ConfigError(f"step k={k} is out of range: 0 <= k <= {self.L}")
        return self._mc(self._u_fn(k), self.lift(x))

    def velocity(self, x: Tensor, k: int) -> Tensor:
        """V_k(x) = v(t_k, x) at points x (n, d), for k = 1..L (k = 0 gives v(0, x))."""
        row = torch.as_tensor(
            slot_of_time(self.config.time_mode, self.times[k], self.times, self.config.knots),
            dtype=torch.float32,
            device=self.device,
        )
        if k == 0 and self.config.time_mode == "per_step":
            row = torch.zeros_like(row)
            row[0] = 1
        w = self.field.weights(row[None])[0]
        return self.field.velocity(w, float(self.times[k]), x)

    def step_map(self, x: Tensor, k: int) -> Tensor:
        """The map of block k (1..L): x_(k-1) -> x_k, for points (n, d)."""
        return self.flow(x, k0=k - 1, k1=k)

    def vector_field(self, t: float, x: Tensor) -> Tensor:
        """v(t, x) for any t in [0, T] (per-step weights: slot k on (t_(k-1), t_k])."""
        row = torch.as_tensor(
            slot_of_time(self.config.time_mode, t, self.times, self.config.knots), dtype=x.dtype, device=x.device
        )
        params = [torch.tensordot(row, p.to(x.dtype), dims=1) for p in self.field.slot_params()]
        return self.field.velocity(tuple(params), t, x)

    def reference(self, x: object, *, rtol: float = REFERENCE_RTOL, atol: float = REFERENCE_ATOL) -> np.ndarray:
        """The continuous characteristics x(t_k) of the same field by adaptive dopri5: (L+1, n, d) float64.

        Points x (n, 2) are rounded to float32 first (as every discrete chain sees them), then lifted.
        The solver stops at the times where v is not smooth in t: the block boundaries of per-step weights
        (jumps) and the knots of continuous weights (kinks). Not defined for the plain net (it is no flow).
        """
        if self.config.scheme == "plain":
            raise ConfigError("the plain (non-residual) net is not a flow: it has no reference solution")
        xt = self.lift(torch.as_tensor(np.asarray(x, dtype=np.float32), device=self.device))
        c = self.config
        jumps = {"per_step": self.times[1:-1], "continuous": np.linspace(0, c.horizon, c.knots)[1:-1]}.get(c.time_mode)
        double = self.double_copy()
        with threads_that_pay(len(xt), c.width, self.device):  # hundreds of small float64 steps: one thread
            return (
                reference_solution(double.vector_field, xt.double(), self.times, jumps=jumps, rtol=rtol, atol=atol)
                .cpu()
                .numpy()
            )

    def double_copy(self) -> FlowModel:
        import copy

        m = copy.deepcopy(self).double()
        m._set_grid_buffers(torch.float64)  # exact interpolation weights, not float32 ones widened
        m.fast = False
        return m

    def with_steps(self, n_steps: int) -> FlowModel:
        """A copy re-discretised with L = n_steps (tied and continuous weights only)."""
        return self.rediscretised(n_steps=n_steps)

    def rediscretised(self, **changes: Any) -> FlowModel:
        """A copy with other discretisation keys (n_steps, scheme, partition, partition_ratio), same field.

        Changing n_steps needs tied or continuous weights: per-step weights are one set per block.
        """
        allowed = {"n_steps", "scheme", "partition", "partition_ratio"}
        bad = sorted(set(changes) - allowed)
        if bad:
            raise ConfigError(f"cannot re-discretise {bad[0]}: only {', '.join(sorted(allowed))} can change")
        cfg = self.config.replace(**changes)
        if self.config.time_mode == "per_step" and cfg.times_key() != self.config.times_key():
            raise ConfigError(
                "re-discretising needs time_mode tied or continuous: per_step weights are one set per "
                "block, so there is no field to sample at other times"
            )
        m = FlowModel(cfg, self.n_classes).to(self.device)
        m.load_state_dict({k: v for k, v in self.state_dict().items() if k not in _GRID_BUFFERS}, strict=False)
        m.train(False)
        return m


def build_model(config: Config, n_classes: int) -> FlowModel:
    """A freshly initialised model (seeded by ``config.seed``)."""
    return FlowModel(config, n_classes)


def trained_loss(config: Config) -> str:
    """Which loss training minimises, in words.

    With eps > 0 training draws one noise path per point and step, so it minimises E[CE(f(X_T), y)]; by
    Jensen's inequality that is an upper bound on CE(E f(X_T), y), the cross-entropy of u(0, x) that
    ``predict_proba`` and the reported losses use.
    """
    if config.viscosity == 0:
        return "cross-entropy of f(x_L), i.e. of u(0, x) = F(x)"
    return (
        "E[CE(f(X_T))]: the mean cross-entropy over noise paths (one path per point and step), an upper "
        "bound (Jensen) on the cross-entropy of u(0, x) = E f(X_T) that the reported loss measures"
    )
