"""A hand-written forward and backward for the whole Euler chain of the two-layer field.

At flowviz's sizes training is bound by per-operation overhead and by
memory traffic, not arithmetic. This Function computes exactly the paper's
eq. 17,

    x_k = x_(k-1) + s_k W2_k a(W1_k x_(k-1) + b1_k) + s_k b2_k,

with three kernels per block in each direction and no autograd recording:

- points are kept feature-major, X of shape (d+1, n) with a row of ones, so
  the block's matrix products are (h, d+1) @ (d+1, n) and (d, h+1) @ (h+1, n),
  the biases riding along as the last weight column (eq. 16 folds s_k in);
- activations are written in place into one preallocated buffer;
- all weight gradients are two batched matrix products after the loop;
- tanh runs as 2 sigmoid(2z) - 1 with the constants folded into the weights
  (torch's CPU tanh is several times slower than its sigmoid).

Tests check it against plain autograd for every activation.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .fields import LEAKY_SLOPE

__all__ = ["euler_two_layer", "FAST_ACTIVATIONS"]


def _leaky_(a: Tensor) -> Tensor:
    return F.leaky_relu_(a, LEAKY_SLOPE)


def _softplus_(a: Tensor) -> Tensor:
    return a.copy_(F.softplus(a))


# base activation applied in place, and a'(z) written from a = a(z) alone
_BASE = {
    "sigmoid": (Tensor.sigmoid_, lambda A: torch.addcmul(A, A, A, value=-1.0)),  # s(1 - s)
    "relu": (Tensor.relu_, lambda A: (A > 0).to(A.dtype)),
    "leaky_relu": (_leaky_, lambda A: torch.where(A > 0, 1.0, LEAKY_SLOPE).to(A.dtype)),
    "softplus": (_softplus_, lambda A: -torch.expm1(-A)),  # sigmoid(z) = 1 - exp(-softplus(z))
}
# activation -> (base, inner scale alpha, outer scale beta, outer shift gamma): a(z) = beta base(alpha z) + gamma
_AFFINE = {"tanh": ("sigmoid", 2.0, 2.0, -1.0)}
FAST_ACTIVATIONS = tuple(_BASE) + tuple(_AFFINE)


class _EulerChain(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x0, W1a, W2a, base: str):
        # x0 (n, d); W1a (L, h, d+1) = [W1 | b1]; W2a (L, d, h+1) = s_k [W2 | b2]
        L, h, d1 = W1a.shape
        d, n = d1 - 1, x0.shape[0]
        act_ = _BASE[base][0]
        X = x0.new_empty(L + 1, d1, n)  # x_0 .. x_L, feature-major, with a ones row
        X[:, d].fill_(1.0)
        X[0, :d].copy_(x0.T)
        A = x0.new_empty(L, h + 1, n)  # activations, with a ones row for the bias b2
        A[:, h].fill_(1.0)
        Xk, Ak, Ah = X[:, :d].unbind(0), A.unbind(0), A[:, :h].unbind(0)  # views, made once
        W1k, W2k = W1a.unbind(0), W2a.unbind(0)
        for k in range(L):
            act_(torch.mm(W1k[k], X[k], out=Ah[k]))  # a(W1 x + b1): (h, n)
            torch.addmm(Xk[k], W2k[k], Ak[k], out=Xk[k + 1])  # x + s (W2 a + b2)
        ctx.save_for_backward(X, A, W1a, W2a)
        ctx.base = base
        return X[L, :d].T

    @staticmethod
    def backward(ctx, gout):
        X, A, W1a, W2a = ctx.saved_tensors
        L, h, d1 = W1a.shape
        d = d1 - 1
        dact = _BASE[ctx.base][1]  # a'(z) from a(z)
        W1T = W1a[:, :, :d].transpose(1, 2).contiguous()  # (L, d, h)
        W2T = W2a[:, :, :h].transpose(1, 2).contiguous()  # (L, h, d)
        G = X.new_empty(L, d, gout.shape[0])  # G[k] = dLoss/dx_(k+1)
        GZ = X.new_empty(L, h, gout.shape[0])  # GZ[k] = dLoss/dz_(k+1)
        G[L - 1].copy_(gout.T)
        Gk, GZk, Ah = G.unbind(0), GZ.unbind(0), A[:, :h].unbind(0)
        W1Tk, W2Tk = W1T.unbind(0), W2T.unbind(0)
        g0 = None
        for k in range(L - 1, -1, -1):
            torch.mm(W2Tk[k], Gk[k], out=GZk[k]).mul_(dact(Ah[k]))
            # through the shortcut and through W1: dLoss/dx_k = G_k + W1^T GZ_k
            if k:
                torch.addmm(Gk[k], W1Tk[k], GZk[k], out=Gk[k - 1])
            else:
                g0 = torch.addmm(Gk[0], W1Tk[0], GZk[0])
        dW1a = torch.bmm(GZ, X[:-1].transpose(1, 2))  # (L, h, d+1): [dW1 | db1]
        dW2a = torch.bmm(G, A.transpose(1, 2))  # (L, d, h+1)
        return g0.T, dW1a, dW2a, None


def euler_two_layer(x0: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor, s: Tensor,
                    activation: str) -> Tensor:
    """x_L of the Euler chain of eq. 17 from x0 (n, d).

    Per-step weights stacked over L: W1 (L, h, d), b1 (L, h), W2 (L, d, h), b2 (L, d); steps s (L,).
    The folding below is ordinary autograd on tiny tensors; the chain itself is one Function.
    """
    base, alpha, beta, gamma = _AFFINE.get(activation, (activation, 1.0, 1.0, 0.0))
    if alpha != 1.0:
        W1, b1 = W1 * alpha, b1 * alpha
    if gamma != 0.0:
        b2 = b2 + gamma * W2.sum(-1)
    W1a = torch.cat([W1, b1[..., None]], -1)
    W2a = torch.cat([W2 * beta if beta != 1.0 else W2, b2[..., None]], -1) * s[:, None, None]
    return _EulerChain.apply(x0, W1a, W2a, base)
