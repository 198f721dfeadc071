"""Velocity fields v(t, x) and the activation table.

Each field stores its weights stacked over K time slots (see ``timegrid``):
every parameter has shape (K, ...). ``weights(P)`` mixes the slots into the
weights of N evaluations (P of shape (N, K)); ``velocity(w, t, x)`` evaluates
v for one evaluation's weights ``w`` at points x of shape (n, d).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ACTIVATIONS", "Activation", "FIELDS", "TwoLayerField", "MLPField", "AntisymmetricField"]

LEAKY_SLOPE = 0.1


@dataclass(frozen=True)
class Activation:
    """a(z), and its derivative a'(z) written from z and a = a(z) (for the hand-written backward)."""

    fn: Callable[[Tensor], Tensor]
    grad: Callable[[Tensor, Tensor], Tensor]


ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation(torch.relu, lambda z, a: (z > 0).to(z.dtype)),
    "tanh": Activation(torch.tanh, lambda z, a: 1 - a * a),
    "sigmoid": Activation(torch.sigmoid, lambda z, a: a * (1 - a)),
    "softplus": Activation(F.softplus, lambda z, a: torch.sigmoid(z)),
    "leaky_relu": Activation(
        lambda z: F.leaky_relu(z, LEAKY_SLOPE), lambda z, a: torch.where(z > 0, 1.0, LEAKY_SLOPE).to(z.dtype)
    ),
}


def _uniform(gen: torch.Generator, shape: tuple[int, ...], bound: float) -> nn.Parameter:
    return nn.Parameter((torch.rand(shape, generator=gen) * 2 - 1) * bound)


class Field(nn.Module):
    """Base: parameters stacked over K slots, mixed by a (N, K) matrix P."""

    names: tuple[str, ...] = ()
    act: Activation  # set by every field
    act_name: str

    def weights(self, P: Tensor) -> list[tuple[Tensor, ...]]:
        """Weights of each of the N evaluations: a list of N tuples, one tensor per parameter."""
        mixed = [torch.tensordot(P, getattr(self, n), dims=1) for n in self.names]  # each (N, ...)
        return list(zip(*[m.unbind(0) for m in mixed]))

    def slot_params(self) -> list[Tensor]:
        """The stacked parameters, in ``names`` order (each (K, ...))."""
        return [getattr(self, n) for n in self.names]

    def velocity(self, w: tuple[Tensor, ...], t: float, x: Tensor) -> Tensor:  # pragma: no cover
        raise NotImplementedError


class TwoLayerField(Field):
    """The paper's eq. 2: v(t, x) = W2(t) a(W1(t) x + b1(t)) + b2(t).

    W1: (K, h, d), b1: (K, h), W2: (K, d, h), b2: (K, d).
    """

    names = ("W1", "b1", "W2", "b2")

    def __init__(self, dim: int, width: int, activation: str, slots: int, gen: torch.Generator, **_: object) -> None:
        super().__init__()
        self.act_name = activation
        self.act = ACTIVATIONS[activation]
        self.W1 = _uniform(gen, (slots, width, dim), 1 / math.sqrt(dim))
        self.b1 = _uniform(gen, (slots, width), 1 / math.sqrt(dim))
        self.W2 = _uniform(gen, (slots, dim, width), 1 / math.sqrt(width))
        self.b2 = nn.Parameter(torch.zeros(slots, dim))

    def velocity(self, w: tuple[Tensor, ...], t: float, x: Tensor) -> Tensor:
        W1, b1, W2, b2 = w
        return torch.addmm(b2, self.act.fn(torch.addmm(b1, x, W1.T)), W2.T)


class MLPField(Field):
    """A general MLP field with ``depth`` hidden layers; t enters the first layer as an input.

    The time input is folded into the first bias: W0 [x; t] + b0 = W0x x + (b0 + t w0t).
    """

    def __init__(
        self,
        dim: int,
        width: int,
        activation: str,
        slots: int,
        gen: torch.Generator,
        depth: int = 2,
        time_input: bool = True,
        **_: object,
    ) -> None:
        super().__init__()
        self.act = ACTIVATIONS[activation]
        self.act_name = activation
        self.depth, self.time_input = depth, time_input
        names: list[str] = []
        sizes = [dim] + [width] * depth + [dim]
        for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
            setattr(self, f"W{i}", _uniform(gen, (slots, b, a), 1 / math.sqrt(a)))
            last = i == depth  # the output bias starts at zero, as b2 of the two-layer field
            setattr(
                self,
                f"b{i}",
                nn.Parameter(torch.zeros(slots, b)) if last else _uniform(gen, (slots, b), 1 / math.sqrt(a)),
            )
            names += [f"W{i}", f"b{i}"]
        if time_input:
            self.wt = _uniform(gen, (slots, width), 1.0)
            names.append("wt")
        self.names = tuple(names)

    def velocity(self, w: tuple[Tensor, ...], t: float, x: Tensor) -> Tensor:
        n = 2 * (self.depth + 1)
        Ws, bs = w[0:n:2], w[1:n:2]
        b0 = bs[0] + t * w[n] if self.time_input else bs[0]
        h = self.act.fn(torch.addmm(b0, x, Ws[0].T))
        for W, b in zip(Ws[1:-1], bs[1:-1]):
            h = self.act.fn(torch.addmm(b, h, W.T))
        return torch.addmm(bs[-1], h, Ws[-1].T)


class AntisymmetricField(Field):
    """Stable field after Haber & Ruthotto (2017): v = a((K - K^T - gamma I) x + b).

    The linear part K - K^T - gamma I has eigenvalues with real part -gamma <= 0 (a statement about the linear
    part only: the field is nonlinear and time-varying, and forward Euler with small gamma can still grow,
    |1 + s lambda| > 1). K: (K, d, d), b: (K, d).
    """

    names = ("K", "b")
    eye: Tensor  # the identity (d, d), a buffer

    def __init__(
        self, dim: int, width: int, activation: str, slots: int, gen: torch.Generator, gamma: float = 0.1, **_: object
    ) -> None:
        super().__init__()
        self.act = ACTIVATIONS[activation]
        self.act_name = activation
        self.gamma = gamma
        self.K = _uniform(gen, (slots, dim, dim), 1 / math.sqrt(dim))
        self.b = _uniform(gen, (slots, dim), 1 / math.sqrt(dim))
        self.register_buffer("eye", torch.eye(dim), persistent=False)

    def linear_part(self, Kw: Tensor) -> Tensor:
        return Kw - Kw.transpose(-1, -2) - self.gamma * self.eye

    def velocity(self, w: tuple[Tensor, ...], t: float, x: Tensor) -> Tensor:
        Kw, b = w
        return self.act.fn(torch.addmm(b, x, self.linear_part(Kw).T))


FIELDS: dict[str, type[Field]] = {
    "two_layer": TwoLayerField,
    "mlp": MLPField,
    "antisymmetric": AntisymmetricField,
}
