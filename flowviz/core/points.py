"""Drawn points in a link: ``points=`` as quantised coordinates in URL-safe base64, and back.

Layout (little-endian): version byte 1, n (uint16), then n x1 codes, n x2 codes (uint16, 0..65535 over
[-RANGE, RANGE], a step of 2.4e-4) and n labels (uint8). 500 points take 3,338 characters. A decoded link
goes through the same validation and limits as an uploaded CSV (:func:`flowviz.core.data.load_csv`).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping, Sequence

import numpy as np

from .data import MAX_COORD, load_csv
from .errors import ConfigError, DataError

__all__ = [
    "MAX_POINTS",
    "RANGE",
    "PROBE_LIMIT",
    "DATA_LIMIT",
    "MAX_SELECTED",
    "encode_points",
    "decode_points",
    "parse_probe",
    "format_probe",
    "check_points",
    "check_extent",
    "coordinate",
    "parse_selection",
]

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
    raw = (
        bytes([_VERSION])
        + np.uint16(len(x)).astype("<u2").tobytes()
        + q[:, 0].tobytes()
        + q[:, 1].tobytes()
        + y.astype(np.uint8).tobytes()
    )
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_points(text: str) -> tuple[np.ndarray, np.ndarray]:
    """The ``points=`` text -> (x (n, 2) float32, y (n,) int64 renumbered 0..k-1), validated as a CSV upload.

    Raises DataError naming what is wrong: too long, not base64, a wrong version or length, bad labels, or what
    load_csv refuses (fewer than 4 points, one class, more than 8)."""
    text = str(text).strip()
    if len(text) > _MAX_CHARS:
        raise DataError(
            f"the drawn points in the link are too long ({len(text)} characters; at most "
            f"{_MAX_CHARS}, i.e. {MAX_POINTS} points)"
        )
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
    q = np.frombuffer(raw[3 : 3 + 4 * n], "<u2").reshape(2, n).T.astype(np.float64)
    y = np.frombuffer(raw[3 + 4 * n :], np.uint8)
    if (y > 7).any():
        raise DataError("the drawn points in the link have a class beyond 7")
    x = q / _Q * (2 * RANGE) - RANGE
    csv = "x1,x2,label\n" + "\n".join(f"{float(a)!r},{float(b)!r},{int(c)}" for (a, b), c in zip(x, y))
    return load_csv(csv)  # the same checks and limits as an uploaded file


PROBE_LIMIT = 1e3  # a point given by a user (link, click, selection, library call): finite, |x1|, |x2| <= this
DATA_LIMIT = 2 * MAX_COORD  # points of a dataset (|x| <= MAX_COORD) and the boxes drawn around them
MAX_SELECTED = 10_000  # points one selection event may carry (a box on the densest click plane has 1,681)


def check_points(x: object, *, limit: float = PROBE_LIMIT, what: str = "probe") -> np.ndarray:
    """Points (m, 2) (or one point (2,)) as float64 (m, 2), checked before any float32 cast: ConfigError unless
    every coordinate is a finite number within [-limit, limit] (1e300 would become inf in float32)."""
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(f"{what} coordinates must be numbers; got {str(x)[:40]!r}") from None
    if a.ndim == 0 or a.shape[-1] != 2 or a.ndim > 2:
        raise ConfigError(f"{what} coordinates must be pairs (x1, x2), shape (m, 2); got shape {a.shape}")
    a = a.reshape(-1, 2)
    if not (np.abs(a) <= limit).all():  # False for NaN too
        raise ConfigError(f"{what} coordinates must be finite and within [-{limit:g}, {limit:g}]")
    return a


def check_extent(extent: object, *, limit: float = DATA_LIMIT) -> tuple[float, float, float, float]:
    """A box (x1 lo, x1 hi, x2 lo, x2 hi) as floats: ConfigError unless four finite numbers within
    [-limit, limit] (check_points) with lo < hi on both axes."""
    try:
        a = np.asarray(extent, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        a = np.zeros(0)
    if a.shape == (4,):
        check_points(a.reshape(2, 2), limit=limit, what="the box's")
    if a.shape != (4,) or not (a[0] < a[1] and a[2] < a[3]):
        raise ConfigError(f"a box is (x1 lo, x1 hi, x2 lo, x2 hi) with lo < hi; got {str(extent)[:60]}")
    x1lo, x1hi, x2lo, x2hi = (float(v) for v in a)
    return x1lo, x1hi, x2lo, x2hi


def coordinate(v: object) -> float | None:
    """One coordinate from a client (a link's text or a selection's value) as a float, or None when it is not a
    number: bools, containers, and text that ``float`` does not read are refused (range is check_points')."""
    if isinstance(v, bool) or not isinstance(v, (int, float, str)):
        return None
    if isinstance(v, str) and len(v) > 100:
        return None
    try:
        return float(v)
    except (ValueError, OverflowError):
        return None


def parse_probe(text: str, *, limit: float = PROBE_LIMIT) -> tuple[float, float]:
    """The ``probe=x1,x2`` text -> (x1, x2): two finite numbers within [-limit, limit]; DataError otherwise."""
    parts = str(text).split(",")
    xs = [coordinate(p) for p in parts]
    if len(xs) != 2 or xs[0] is None or xs[1] is None:
        raise DataError(f"probe must be two numbers x1,x2; got {str(text)[:40]!r}")
    try:
        x = (xs[0], xs[1])
        check_points(x, limit=limit)
    except ConfigError as e:
        raise DataError(str(e)) from None
    return x


def parse_selection(event: object, *, limit: float = PROBE_LIMIT) -> tuple[np.ndarray | None, str | None]:
    """A plane's selection event from the client (Streamlit's ``{"selection": {"points": [{"x", "y", ..}]}}``,
    any JSON-like value) -> (points (m, 2) float64, None), or (None, None) for an empty event, or (None, a plain
    notice) for a malformed one: never raises. Each point's x and y go through :func:`coordinate` and
    :func:`check_points` with ``limit``, the rules of ``probe=``; one bad point refuses the whole event."""
    if event is None:
        return None, None
    bad = "The selection on the plane was ignored: "
    try:
        if not isinstance(event, Mapping):
            return None, bad + "it is not an object."
        if event.get("malformed"):
            return None, bad + str(event["malformed"])[:120]
        sel = event.get("selection")
        if sel is None:
            return None, None
        pts = sel.get("points") if isinstance(sel, Mapping) else None
        if pts is None:
            return None, None if isinstance(sel, Mapping) else bad + "its selection is not an object."
        if not isinstance(pts, list):
            return None, bad + "its points are not a list."
        if len(pts) > MAX_SELECTED:
            return None, bad + f"{len(pts)} points; at most {MAX_SELECTED}."
        xy: list[tuple[float | None, float | None]] = []
        for p in pts:
            c = (coordinate(p.get("x")), coordinate(p.get("y"))) if isinstance(p, Mapping) else (None, None)
            if None in c:
                return None, bad + "a point's x and y are not numbers."
            xy.append(c)
        if not xy:
            return None, None
        try:
            return check_points(xy, limit=limit, what="a selected point's"), None
        except ConfigError as e:
            return None, bad + f"{e}."
    except Exception:  # noqa: BLE001 - a hostile value must not reach the page as an error
        return None, bad + "it could not be read."


def format_probe(x: Sequence[float] | np.ndarray) -> str:
    """(x1, x2) -> the ``probe=`` text (4 significant digits: a click's precision)."""
    return f"{float(x[0]):.4g},{float(x[1]):.4g}"
