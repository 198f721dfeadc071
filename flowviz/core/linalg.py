"""LAPACK on batches of small matrices that may not be finite (a characteristic that left the floats, a field
with NaN weights): MKL's eigvals can kill the process on NaN or inf input (a segfault after "Parameter 3 was
incorrect on entry to ?GEBAL", no Python exception; seen in float32 on one CPU, float64 on another), so no
matrix reaches LAPACK unless all its entries are finite and below sqrt(the dtype's largest number), where
balancing cannot overflow.

Each function takes M (..., d, d) and gives the routine's result for the matrices that pass and NaN for the
others (they are replaced by zero matrices before the call).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .errors import ConfigError

__all__ = ["finite_matrices", "eigvals", "det", "logabsdet", "spectral_norm", "check_finite_weights"]


def check_finite_weights(model: torch.nn.Module, use: str) -> None:
    """ConfigError unless every weight of ``model`` is finite: an adaptive solver on a NaN field shrinks its step
    to 0, and a grid solver's departure points become NaN indices. ``use``: what needs them (for the message)."""
    if not all(bool(torch.isfinite(p).all()) for p in model.parameters()):
        raise ConfigError(f"the field's weights are not finite (NaN or inf): {use} cannot be computed")


def finite_matrices(M: Tensor) -> tuple[Tensor, Tensor]:
    """(M with every matrix that is not safe replaced by zeros, ok (...,) bool: which matrices were kept)."""
    cap = torch.finfo(M.dtype).max ** 0.5 if M.is_floating_point() or M.is_complex() else float("inf")
    ok = (torch.isfinite(M) & (M.abs() < cap)).flatten(-2).all(-1)
    if bool(ok.all()):
        return M, ok
    return torch.where(ok[..., None, None], M, torch.zeros((), dtype=M.dtype, device=M.device)), ok


def _masked(out: Tensor, ok: Tensor) -> Tensor:
    """``out`` (..., *) with NaN where ``ok`` (...,) is False."""
    if bool(ok.all()):
        return out
    mask = ok.reshape(ok.shape + (1,) * (out.dim() - ok.dim()))
    return torch.where(mask, out, torch.full((), float("nan"), dtype=out.dtype, device=out.device))


def eigvals(M: Tensor) -> Tensor:
    """torch.linalg.eigvals (..., d) complex; NaN for a matrix that is not finite."""
    safe, ok = finite_matrices(M)
    return _masked(torch.linalg.eigvals(safe), ok)


def det(M: Tensor) -> Tensor:
    """torch.linalg.det (...,); NaN for a matrix that is not finite."""
    safe, ok = finite_matrices(M)
    return _masked(torch.linalg.det(safe), ok)


def logabsdet(M: Tensor) -> Tensor:
    """log |det M| (...,) by torch.linalg.slogdet; NaN for a matrix that is not finite."""
    safe, ok = finite_matrices(M)
    return _masked(torch.linalg.slogdet(safe)[1], ok)


def spectral_norm(M: Tensor) -> Tensor:
    """The largest singular value |M|_2 (...,) (an SVD); NaN for a matrix that is not finite."""
    safe, ok = finite_matrices(M)
    return _masked(torch.linalg.matrix_norm(safe, ord=2), ok)
