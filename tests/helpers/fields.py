"""Models whose flow is known exactly, for the tests that compare a solver or an instrument against it."""

import torch

from flowviz import Config, build_model


def linear_model(A, *, T=1.0, L=4, scheme="euler", time_mode="tied", viscosity=0.0):
    """A two-layer relu field that is exactly v(x) = A x: W2 relu(W1 x) with W1 = [I; -I], W2 = [A, -A]
    (relu(z) - relu(-z) = z), and a fixed head f(x) = softmax(Wf x + bf) with a smooth boundary."""
    cfg = Config(
        field="two_layer",
        activation="relu",
        width=4,
        n_steps=L,
        horizon=T,
        scheme=scheme,
        time_mode=time_mode,
        viscosity=viscosity,
        head="learned",
    )
    m = build_model(cfg, 2)
    At = torch.as_tensor(A, dtype=torch.float32)
    eye = torch.eye(2)
    with torch.no_grad():
        m.field.W1.copy_(torch.cat([eye, -eye])[None].expand_as(m.field.W1))
        m.field.b1.zero_()
        m.field.W2.copy_(torch.cat([At, -At], 1)[None].expand_as(m.field.W2))
        m.field.b2.zero_()
        m.head_W.copy_(torch.tensor([[-1.0, -0.5], [1.0, 0.5]]))
        m.head_b.copy_(torch.tensor([0.0, 0.3]))
    return m
