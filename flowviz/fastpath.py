"""A hand-written forward and backward for the whole Euler chain of the two-layer field.

At flowviz's sizes training is bound by per-operation overhead, not
arithmetic. Recording L blocks in autograd costs about twice the ops of the
computation itself; this Function records nothing, runs three or four
kernels per block each way, and does all weight gradients as batched matrix
products after the loop. It computes exactly the paper's eq. 17:

    x_k = x_(k-1) + s_k W2_k a(W1_k x_(k-1) + b1_k) + s_k b2_k.

Tests check it against plain autograd (``torch.autograd.gradcheck``).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .fields import ACTIVATIONS

__all__ = ["euler_two_layer"]


class _EulerTwoLayer(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x0, W1, b1, W2, b2, s, act_name: str):
        # x0 (n, d); W1 (L, h, d); b1 (L, h); W2 (L, d, h); b2 (L, d); s (L,)
        act = ACTIVATIONS[act_name].fn
        sW2T = (W2 * s[:, None, None]).transpose(1, 2)  # (L, h, d): s_k W2_k^T, eq. 16
        sb2 = b2 * s[:, None]  # (L, d)
        W1T = W1.transpose(1, 2)  # (L, d, h)
        xs, zs, As = [x0], [], []
        x = x0
        for k in range(W1.shape[0]):
            z = torch.addmm(b1[k], x, W1T[k])  # (n, h)
            a = act(z)
            x = torch.addmm(x, a, sW2T[k]).add_(sb2[k])
            xs.append(x)
            zs.append(z)
            As.append(a)
        X, Z, A = torch.stack(xs), torch.stack(zs), torch.stack(As)  # (L+1, n, d), (L, n, h), (L, n, h)
        ctx.save_for_backward(X, Z, A, W1, W2, s)
        ctx.act_name = act_name
        return x

    @staticmethod
    def backward(ctx, g):
        X, Z, A, W1, W2, s = ctx.saved_tensors
        D = ACTIVATIONS[ctx.act_name].grad(Z, A)  # a'(z) for all blocks at once: (L, n, h)
        sW2 = W2 * s[:, None, None]  # (L, d, h)
        L = W1.shape[0]
        gxs, gzs = [None] * L, [None] * L
        for k in range(L - 1, -1, -1):
            gxs[k] = g  # dLoss/dx_(k+1)
            gz = torch.mm(g, sW2[k]).mul_(D[k])  # (n, h)
            gzs[k] = gz
            g = torch.addmm(g, gz, W1[k])  # through the identity and through W1
        GX, GZ = torch.stack(gxs), torch.stack(gzs)  # (L, n, d), (L, n, h)
        dW1 = torch.bmm(GZ.transpose(1, 2), X[:-1])  # (L, h, d)
        db1 = GZ.sum(1)
        GXs = GX * s[:, None, None]
        dW2 = torch.bmm(GXs.transpose(1, 2), A)  # (L, d, h)
        db2 = GXs.sum(1)
        return g, dW1, db1, dW2, db2, None, None  # step sizes are fixed, not learned


def euler_two_layer(x0: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor, s: Tensor,
                    activation: str) -> Tensor:
    """x_L of the Euler chain of eq. 17 from x0 (n, d); per-step weights stacked over L."""
    return _EulerTwoLayer.apply(x0, W1, b1, W2, b2, s, activation)
