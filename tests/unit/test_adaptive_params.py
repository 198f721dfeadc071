"""core.solvers.adaptive keeps a module field's parameters visible to odeint_adjoint."""

import torch
from torchdiffeq import odeint, odeint_adjoint

from flowviz.core.solvers import adaptive


class Linear(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Parameter(torch.tensor(-0.7, dtype=torch.float64))

    def forward(self, t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return self.a * x


def test_the_adjoint_through_adaptive_gives_the_exact_parameter_gradient() -> None:
    """x' = a x, x(1) = x0 e^a: d x(1) / d a = x0 e^a, found only if the wrapper registers the field's a."""
    field = Linear()
    x0 = torch.tensor([1.5], dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    xT = adaptive(lambda f, o: odeint_adjoint(f, x0, t, rtol=1e-10, atol=1e-12, options=o), field, {})[-1]
    (g,) = torch.autograd.grad(xT.sum(), field.a)
    exact = 1.5 * torch.exp(field.a.detach())
    assert abs(float(g) - float(exact)) < 1e-7


def test_adaptive_counts_and_agrees_with_a_plain_solve() -> None:
    field = Linear()
    x0 = torch.tensor([1.5], dtype=torch.float64)
    t = torch.tensor([0.0, 1.0], dtype=torch.float64)
    with torch.no_grad():
        a = adaptive(lambda f, o: odeint(f, x0, t, rtol=1e-10, atol=1e-12, options=o), field, {})
        b = odeint(field, x0, t, rtol=1e-10, atol=1e-12)
    assert torch.equal(a, b)
