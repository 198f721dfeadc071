"""Drawn points in a link: ``points=`` as quantised coordinates in URL-safe base64, and back.

Layout (little-endian): version byte 1, n (uint16), then n x1 codes, n x2 codes (uint16, 0..65535 over
[-RANGE, RANGE], a step of 2.4e-4) and n labels (uint8). 500 points take 3,338 characters. A decoded link
goes through the same validation and limits as an uploaded CSV (:func:`flowviz.core.data.load_csv`).
"""

from __future__ import annotations

import base64
import binascii
import re

import numpy as np

from .data import load_csv
from .errors import DataError

__all__ = ["MAX_POINTS", "RANGE", "encode_points", "decode_points", "parse_probe", "format_probe"]

MAX_POINTS = 500
RANGE = 8.0
_VERSION = 1
_Q = 65535
_MAX_CHARS = 4 * ((3 + 5 * MAX_POINTS + 2) // 3)
_B64 = re.compile(r"^[A-Za-z0-9_-]*$")


def encode_points(x: np.ndarray, y: np.ndarray) -> str:
    """Points (n, 2) with labels 0..7 (n,) -> the ``points=`` text. Raises DataError beyond the limits."""
    x, y = np.asarray(x, np.float64).reshape(-1, 2), np.asarray(y).reshape(-1)
    if len(x) != len(y):
        raise DataError(f"{len(x)} points but {len(y)} labels")
    if len(x) > MAX_POINTS:
        raise DataError(f"{len(x)} drawn points; a link holds at most {MAX_POINTS}")
    if not np.isfinite(x).all() or np.abs(x).max(initial=0) > RANGE:
        raise DataError(f"drawn points must lie within [-{RANGE:g}, {RANGE:g}] in both coordinates")
    if len(y) and (y.min() < 0 or y.max() > 7):
        raise DataError("drawn points take classes 0 to 7")
    q = np.round((x + RANGE) / (2 * RANGE) * _Q).astype("<u2")
    raw = bytes([_VERSION]) + np.uint16(len(x)).astype("<u2").tobytes() + q[:, 0].tobytes() + q[:, 1].tobytes() \
        + y.astype(np.uint8).tobytes()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_points(text: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``points=`` text -> (x (n, 2) float32, y (n,) int64 renumbered 0..k-1), validated as a CSV upload.

    Raises DataError naming what is wrong: too long, not base64, a wrong version or length, bad labels, or what
    load_csv refuses (fewer than 4 points, one class, more than 8)."""
    text = str(text).strip()
    if len(text) > _MAX_CHARS:
        raise DataError(f"the drawn points in the link are too long ({len(text)} characters; at most "
                        f"{_MAX_CHARS}, i.e. {MAX_POINTS} points)")
    if not _B64.match(text):
        raise DataError("the drawn points in the link are not URL-safe base64")
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        raise DataError("the drawn points in the link are not valid base64") from None
    if len(raw) < 3 or raw[0] != _VERSION:
        raise DataError("the drawn points in the link are not in flowviz's format (version 1)")
    n = int(np.frombuffer(raw[1:3], "<u2")[0])
    if n > MAX_POINTS or len(raw) != 3 + 5 * n:
        raise DataError(f"the drawn points in the link are damaged: {len(raw)} bytes for {n} points")
    q = np.frombuffer(raw[3:3 + 4 * n], "<u2").reshape(2, n).T.astype(np.float64)
    y = np.frombuffer(raw[3 + 4 * n:], np.uint8)
    if (y > 7).any():
        raise DataError("the drawn points in the link have a class beyond 7")
    x = q / _Q * (2 * RANGE) - RANGE
    csv = "x1,x2,label\n" + "\n".join(f"{float(a)!r},{float(b)!r},{int(c)}" for (a, b), c in zip(x, y))
    return load_csv(csv)  # the same checks and limits as an uploaded file


def parse_probe(text: str, *, limit: float = 1e3) -> tuple[float, float]:
    """The ``probe=x1,x2`` text -> (x1, x2): two finite numbers within [-limit, limit]; DataError otherwise."""
    parts = str(text).split(",")
    if len(parts) != 2:
        raise DataError(f"probe must be two numbers x1,x2; got {str(text)[:40]!r}")
    try:
        x = tuple(float(p) for p in parts)
    except ValueError:
        raise DataError(f"probe must be two numbers x1,x2; got {str(text)[:40]!r}") from None
    if not all(np.isfinite(x)) or max(abs(x[0]), abs(x[1])) > limit:
        raise DataError(f"probe coordinates must be finite and within [-{limit:g}, {limit:g}]")
    return x


def format_probe(x) -> str:
    """(x1, x2) -> the ``probe=`` text (4 significant digits: a click's precision)."""
    return f"{float(x[0]):.4g},{float(x[1]):.4g}"
