"""A hand-written forward and backward for the whole Euler chain of the two-layer field.

At flowviz's sizes training is bound by per-operation overhead and by
memory traffic, not arithmetic. This Function computes exactly the paper's
eq. 17,

    x_k = x_(k-1) + s_k W2_k a(W1_k x_(k-1) + b1_k) + s_k b2_k,

with three kernels per block in each direction and no autograd recording:

- points are kept feature-major, X of shape (d+1, n) with a row of ones, so
  the block's matrix products are (h, d+1) @ (d+1, n) and (d, h+1) @ (h+1, n),
  the biases riding along as the last weight column (eq. 16 folds s_k in);
- activations are written in place into one preallocated buffer; a thread keeps the
  buffers of its last shapes, with their per-block views, for its next step (reused
  only once autograd has let go of the graph that saved them; autograd's version
  check would refuse a gradient through overwritten ones);
- all weight gradients are two batched matrix products after the loop;
- in the backward, g * a'(z) is torch's own one-kernel derivative where it has one
  (tanh, sigmoid: the kernels autograd runs).

Several chains of different depth (the members of a depth sweep) run in one
time loop: :func:`pack_lanes` lays them end to end in "lanes" of the deepest
member's length, and each block is one batched product over the lanes; at a
member's first block its lane restarts from x0.

Tests check it against plain autograd for every activation, and the lanes
against members run one by one.
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from .fields import LEAKY_SLOPE

__all__ = [
    "euler_two_layer",
    "euler_lanes",
    "fold_weights",
    "pack_lanes",
    "LanePlan",
    "FAST_ACTIVATIONS",
    "ACTIVATION_BUDGET",
]


def _leaky_(a: Tensor) -> Tensor:
    return F.leaky_relu_(a, LEAKY_SLOPE)


def _softplus_(a: Tensor) -> Tensor:
    return a.copy_(F.softplus(a))


# activation applied in place, and a'(z) written from a = a(z) alone
_BASE: dict[str, tuple[Callable[[Tensor], Tensor], Callable[[Tensor], Tensor]]] = {
    "tanh": (Tensor.tanh_, lambda A: torch.addcmul(torch.ones_like(A), A, A, value=-1.0)),  # 1 - tanh^2
    "sigmoid": (Tensor.sigmoid_, lambda A: torch.addcmul(A, A, A, value=-1.0)),  # s(1 - s)
    "relu": (Tensor.relu_, lambda A: (A > 0).to(A.dtype)),
    "leaky_relu": (_leaky_, lambda A: torch.where(A > 0, 1.0, LEAKY_SLOPE).to(A.dtype)),
    "softplus": (_softplus_, lambda A: -torch.expm1(-A)),  # sigmoid(z) = 1 - exp(-softplus(z))
}
# g * a'(z) from a = a(z) in one kernel, where torch has one (the kernel autograd itself runs): the backward then
# needs no a'(z) of every block beforehand (figures in bench/README.md). The overload's C++ entry point
# where torch exposes it (a microsecond less per call than the OpOverload), else the OpOverload.
_TIMES_DERIVATIVE: dict[str, Callable[..., Tensor]] = {
    name: getattr(op, "_op", op)
    for name, op in (
        ("tanh", torch.ops.aten.tanh_backward.grad_input),
        ("sigmoid", torch.ops.aten.sigmoid_backward.grad_input),
    )
}
FAST_ACTIVATIONS = tuple(_BASE)


class LanePlan(NamedTuple):
    """How members of different depth share one time loop (see :func:`pack_lanes`).

    ``blocks``: J, the loop length; ``lanes``: how many chains run side by side;
    ``starts[j]``: lanes whose next member begins at block j (j >= 1; its input is x0 again);
    ``ends[j]``: (member, lane) pairs whose last block is j.
    """

    blocks: int
    lanes: int
    starts: tuple[tuple[int, ...], ...]
    ends: tuple[tuple[tuple[int, int], ...], ...]
    members: int
    slots: tuple[tuple[int, int, int], ...]  # per member: (lane, first block, L)


def pack_lanes(lengths: Iterable[int]) -> LanePlan:
    """Pack chains of lengths L_m into lanes of the longest length, first fit by decreasing L.

    For L = 1, 2, 4, ..., 64 this gives two lanes: [64] and [32, 16, 8, 4, 2, 1], so the
    whole sweep runs as 64 batched blocks, the cost of its deepest member plus a little.
    """
    return _pack_lanes(tuple(int(L) for L in lengths))  # every forward asks again: the plan is kept


@functools.lru_cache(maxsize=256)
def _pack_lanes(lengths: tuple[int, ...]) -> LanePlan:
    J = max(lengths)
    fill: list[int] = []
    slots: list[tuple[int, int, int]] = [(0, 0, 0)] * len(lengths)  # every member's is set below
    for m in sorted(range(len(lengths)), key=lambda m: (-lengths[m], m)):
        lane = next((i for i, f in enumerate(fill) if f + lengths[m] <= J), None)
        if lane is None:
            lane = len(fill)
            fill.append(0)
        slots[m] = (lane, fill[lane], lengths[m])
        fill[lane] += lengths[m]
    starts: list[list[int]] = [[] for _ in range(J)]
    ends: list[list[tuple[int, int]]] = [[] for _ in range(J)]
    for m, (lane, first, L) in enumerate(slots):
        if first:
            starts[first].append(lane)
        ends[first + L - 1].append((m, lane))
    return LanePlan(J, len(fill), tuple(map(tuple, starts)), tuple(map(tuple, ends)), len(lengths), tuple(slots))


# Above this many bytes of activations the backward recomputes a(W1 x + b1) block by block from the stored
# inputs instead of keeping them: memory O(L d n) instead of O(L h n), and for big n faster too (the stored
# activations no longer fit any cache). bench/train_scaling.py and bench/memory.py measure both sides.
ACTIVATION_BUDGET = 8 * 2**20


class _Buffers:
    """The chain's preallocated tensors of one shape and their views per block (dim 0).

    Making a view costs about a microsecond, and a step of L = 32 blocks used hundreds of them: at flowviz's
    sizes a noticeable part of a training step (figures in bench/README.md). Buffers of small shapes are kept by
    the thread that made them and used again by its next call of that shape (:func:`_buffers`); ``busy`` while a
    forward's buffers are saved for a backward that may still come.
    """

    def __init__(self, tensors: dict[str, Tensor]) -> None:
        self.t = tensors
        self.v = {name: t.unbind(0) for name, t in tensors.items()}
        self.busy = False

    def release(self) -> None:
        self.busy = False


_LOCAL = threading.local()  # each thread's kept buffers: {key: _Buffers}, the last four keys it used
KEEP_BUFFERS_BYTES = ACTIVATION_BUDGET  # larger buffers are made for each call (arithmetic dominates there)


def _buffers(key: tuple[object, ...], device: torch.device, nbytes: int, make: Callable[[], _Buffers]) -> _Buffers:
    """Free buffers for ``key``: this thread's kept ones, or ``make()`` (kept too if small, on a CPU).

    Never kept on a GPU: a CUDA graph records its tensors' addresses, and memory from a graph's capture must not
    be lent outside it.
    """
    if device.type != "cpu" or nbytes > KEEP_BUFFERS_BYTES:
        return make()
    kept: OrderedDict[tuple[object, ...], _Buffers] = _LOCAL.__dict__.setdefault("kept", OrderedDict())
    b = kept.get(key)
    if b is None:
        b = kept[key] = make()
        while len(kept) > 4:
            kept.popitem(last=False)
    elif b.busy:  # two forwards before one backward: the second gets its own
        return make()
    kept.move_to_end(key)
    return b


class _LaneChain(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x0: Tensor, W1a: Tensor, W2a: Tensor, base: str, plan: LanePlan) -> Tensor:
        # x0 (n, d); W1a (J, lanes, h, d+1) = [W1 | b1]; W2a (J, lanes, d, h+1) = s_k [W2 | b2]
        J, lanes, h, d1 = W1a.shape
        d, n = d1 - 1, x0.shape[0]
        act_ = _BASE[base][0]
        grad = any(ctx.needs_input_grad[:3])
        keep = grad and J * lanes * (h + 1) * n * x0.element_size() <= ACTIVATION_BUDGET
        KA = J if keep else 1

        def make() -> _Buffers:  # block inputs X, feature-major with a ones row (for b1); activations A (all, or one
            # block's) with a ones row (for b2); room for the weights, whose per-block views are then kept too
            X, A = x0.new_empty(J + 1, lanes, d1, n), x0.new_empty(KA, lanes, h + 1, n)
            X[:, :, d].fill_(1.0)
            A[:, :, h].fill_(1.0)
            return _Buffers(
                {
                    "X": X,
                    "Xd": X[:, :, :d],
                    "A": A,
                    "Ah": A[:, :, :h],
                    "W1": torch.empty_like(W1a),
                    "W2": torch.empty_like(W2a),
                }
            )

        size = ((J + 1) * d1 + KA * (h + 1)) * lanes * n * x0.element_size()
        buf = _buffers(("forward", J, lanes, h, d1, n, KA, x0.dtype), x0.device, size, make)
        buf.busy = True
        try:
            X, A = buf.t["X"], buf.t["A"]
            x0T = x0.T
            X[0, :, :d].copy_(x0T)
            buf.t["W1"].copy_(W1a)
            buf.t["W2"].copy_(W2a)
            out = x0.new_empty(plan.members, n, d)  # x_L of each member
            Xj, Xd, Aj, Ah, W1j, W2j = (buf.v[k] for k in ("X", "Xd", "A", "Ah", "W1", "W2"))
            for j in range(J):
                i = j if keep else 0
                for lane in plan.starts[j]:
                    Xd[j][lane].copy_(x0T)  # a new member starts from the inputs
                act_(torch.bmm(W1j[j], Xj[j], out=Ah[i]))  # a(W1 x + b1): (lanes, h, n)
                torch.baddbmm(Xd[j], W2j[j], Aj[i], out=Xd[j + 1])  # x + s (W2 a + b2)
                for m, lane in plan.ends[j]:
                    out[m].copy_(Xd[j + 1][lane].T)
        except BaseException:
            buf.release()
            raise
        if grad:  # the buffers are the backward's until autograd lets go of this node (after it, or unused)
            ctx.save_for_backward(X, A if keep else None, W1a, W2a)
            ctx.buf = buf
            weakref.finalize(ctx, buf.release)
        else:
            buf.release()
        ctx.base, ctx.plan, ctx.keep = base, plan, keep
        return out

    @staticmethod
    def backward(ctx: Any, gout: Tensor) -> tuple[Tensor | None, Tensor, Tensor, None, None]:
        X, A, W1a, W2a = ctx.saved_tensors
        plan, keep = ctx.plan, ctx.keep
        J, lanes, h, d1 = W1a.shape
        d, n = d1 - 1, gout.shape[1]
        dact = _BASE[ctx.base][1]  # a'(z) from a(z)
        times_dact = _TIMES_DERIVATIVE.get(ctx.base)  # g * a'(z) from (g, a(z)) in place, or None
        need_x0 = ctx.needs_input_grad[0]
        # G[j] = dLoss/d(output of block j), GZ[j] = dLoss/d(pre-activation of block j); all of them are
        # kept for the batched weight gradients below, or two of each when recomputing (one block's
        # activations at a time then, recomputed from the stored inputs into R)
        KG, KZ = (J, J) if keep else (2, 1)

        def make() -> _Buffers:
            G, GZ, R = X.new_empty(KG, lanes, d, n), X.new_empty(KZ, lanes, h, n), X.new_empty(1, lanes, h + 1, n)
            R[:, :, h].fill_(1.0)
            return _Buffers(
                {
                    "G": G,
                    "GZ": GZ,
                    "R": R,
                    "Rh": R[:, :, :h],
                    "W1T": W1a.new_empty(J, lanes, d, h),
                    "W2T": W2a.new_empty(J, lanes, h, d),
                }
            )

        size = (KG * d + KZ * h + h + 1) * lanes * n * X.element_size()
        buf = _buffers(("backward", J, lanes, h, d1, n, KG, X.dtype), X.device, size, make)
        G, GZ = buf.t["G"], buf.t["GZ"]
        buf.t["W1T"].copy_(W1a[..., :d].transpose(-1, -2))  # (J, lanes, d, h)
        buf.t["W2T"].copy_(W2a[..., :h].transpose(-1, -2))  # (J, lanes, h, d)
        dW1aT = None if keep else W1a.new_empty(J, lanes, d1, h)  # recomputing: [dW1 | db1] transposed, see below
        dW2a = None if keep else torch.empty_like(W2a)
        # a'(z) of every kept block in one kernel (not one small kernel and allocation per block)
        Dj: Sequence[Tensor] = dact(A[:, :, :h]).unbind(0) if keep and times_dact is None else ()
        Gj, GZj, W1Tj, W2Tj = (buf.v[k] for k in ("G", "GZ", "W1T", "W2T"))
        if keep:
            Ah = ctx.buf.v["Ah"]  # (the forward's buffers: their views are kept there)
        else:  # recomputing: each block's inputs and W1 (the forward's views), A with its ones row (its gradient)
            A, Aj, Ah = buf.t["R"], buf.v["R"], buf.v["Rh"]
            W1j, Xj = ctx.buf.v["W1"], ctx.buf.v["X"]
        act_ = _BASE[ctx.base][0]

        def g(j: int) -> Tensor:  # the buffer holding G_j
            return Gj[j] if keep else Gj[j % 2]

        g(J - 1).zero_()  # lanes that end early carry zero through their padding
        g0 = gout.new_zeros(d, n) if need_x0 else None
        for j in range(J - 1, -1, -1):
            i = j if keep else 0
            if not keep:
                act_(torch.bmm(W1j[j], Xj[j], out=Ah[0]))
            for m, lane in plan.ends[j]:
                g(j)[lane].copy_(gout[m].T)
            gz = torch.bmm(W2Tj[j], g(j), out=GZj[i])  # dLoss/da, then times a'(z): dLoss/dz
            if times_dact is not None:
                times_dact(gz, Ah[i], grad_input=gz)
            else:
                gz.mul_(Dj[j] if keep else dact(Ah[0]))
            if dW1aT is not None and dW2a is not None:  # recomputing
                torch.bmm(Xj[j], GZj[0].transpose(-1, -2), out=dW1aT[j])  # [dW1 | db1] of block j, transposed
                torch.bmm(g(j), Aj[0].transpose(-1, -2), out=dW2a[j])  # [dW2 | db2]
            # through the shortcut and through W1: dLoss/d(input of block j) = G_j + W1^T GZ_j
            if j:
                torch.baddbmm(g(j), W1Tj[j], GZj[i], out=g(j - 1))
                if g0 is not None:  # need_x0
                    for lane in plan.starts[j]:  # that lane's input at block j was x0
                        g0 += g(j - 1)[lane]
            elif g0 is not None:  # need_x0
                g0 += torch.baddbmm(g(0), W1Tj[0], GZj[i]).sum(0)
        if keep:
            # [dW1 | db1] (J, lanes, h, d+1) as its transpose X GZ^T: the same sums over the n points, in the
            # layout that is fast for so few output columns (here 54 us against 199 us; recomputing, 6x)
            dW1aT = torch.matmul(X[:-1], GZ.transpose(-1, -2))
            dW2a = torch.matmul(G, A.transpose(-1, -2))  # (J, lanes, d, h+1): [dW2 | db2]
        assert dW1aT is not None and dW2a is not None
        dW1a = dW1aT.transpose(-1, -2)
        return (g0.T if g0 is not None else None), dW1a, dW2a, None, None


def fold_weights(
    W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor, s: Tensor, activation: str
) -> tuple[Tensor, Tensor, str]:
    """Per-block weights in the chain's form: (W1a (L, h, d+1), W2a (L, d, h+1), activation).

    W2a carries the step size s_k (eq. 16: s_k V_k is again a two-layer map). The folding is
    ordinary autograd on tiny tensors; the chain itself is one Function.
    """
    W1a = torch.cat([W1, b1[..., None]], -1)
    W2a = torch.cat([W2, b2[..., None]], -1) * s[:, None, None]
    return W1a, W2a, activation


def euler_lanes(x0: Tensor, folded: list[tuple[Tensor, Tensor]], base: str, plan: LanePlan) -> Tensor:
    """x_L of every member's Euler chain from the same x0 (n, d): shape (members, n, d).

    ``folded``: per member (W1a, W2a) from :func:`fold_weights`; ``plan``: :func:`pack_lanes` of their L.
    """
    h, d1 = folded[0][0].shape[1:]
    d = d1 - 1
    lanes_1: list[list[Tensor]] = [[] for _ in range(plan.lanes)]
    lanes_2: list[list[Tensor]] = [[] for _ in range(plan.lanes)]
    for m in sorted(range(plan.members), key=lambda m: plan.slots[m][1]):
        lane = plan.slots[m][0]
        lanes_1[lane].append(folded[m][0])
        lanes_2[lane].append(folded[m][1])
    for lane in range(plan.lanes):
        pad = plan.blocks - sum(w.shape[0] for w in lanes_1[lane])
        if pad:  # zero weights: the identity map, never read
            lanes_1[lane].append(x0.new_zeros(pad, h, d1))
            lanes_2[lane].append(x0.new_zeros(pad, d, h + 1))
    W1a = torch.stack([torch.cat(w) if len(w) > 1 else w[0] for w in lanes_1], 1)
    W2a = torch.stack([torch.cat(w) if len(w) > 1 else w[0] for w in lanes_2], 1)
    out: Tensor = _LaneChain.apply(x0, W1a, W2a, base, plan)  # type: ignore[no-untyped-call]  # torch's apply is untyped
    return out


def euler_two_layer(x0: Tensor, W1: Tensor, b1: Tensor, W2: Tensor, b2: Tensor, s: Tensor, activation: str) -> Tensor:
    """x_L of the Euler chain of eq. 17 from x0 (n, d).

    Per-step weights stacked over L: W1 (L, h, d), b1 (L, h), W2 (L, d, h), b2 (L, d); steps s (L,).
    """
    W1a, W2a, base = fold_weights(W1, b1, W2, b2, s, activation)
    return euler_lanes(x0, [(W1a, W2a)], base, pack_lanes([W1.shape[0]]))[0]
