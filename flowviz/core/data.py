"""Toy 2-D datasets (seeded) and CSV import with validation.

Every generator takes ``(n, noise, rng, n_classes)`` and returns points of
shape (n, 2) and integer labels of shape (n,). ``DATASETS`` is the name table
used by the config, the UI and the URL.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

import numpy as np

from .config import Config
from .errors import DataError, echo

__all__ = ["Dataset", "DATASETS", "make_dataset", "load_csv", "split", "MAX_CSV_ROWS", "MAX_CSV_BYTES"]

MAX_CSV_ROWS = 20_000
MAX_CSV_BYTES = 2_000_000
MAX_COORD = 1e6  # |x1|, |x2|: float32 (what training uses) keeps 7 digits; squares stay far from overflow
MAX_LABEL = 1000  # class ids are small integers: larger ones would merge in an int64 or float32 conversion


@dataclass(frozen=True)
class Dataset:
    """Train and test points (float32, shape (n, 2)) with integer labels (shape (n,))."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int

    @property
    def x(self) -> np.ndarray:
        return np.concatenate([self.x_train, self.x_test])

    @property
    def y(self) -> np.ndarray:
        return np.concatenate([self.y_train, self.y_test])

    def extent(self, margin: float = 0.15) -> tuple[float, float, float, float]:
        """A square box (x1 min, x1 max, x2 min, x2 max) around all points, with a margin."""
        return square_box(self.x, margin)


def square_box(pts: np.ndarray, margin: float, max_radius: float = 1e3) -> tuple[float, float, float, float]:
    """The smallest square around points (m, 2), enlarged by ``margin`` (NaN ignored, radius capped)."""
    lo, hi = np.nanmin(pts, 0), np.nanmax(pts, 0)
    c, r = (lo + hi) / 2, min((hi - lo).max() / 2 * (1 + margin) + 1e-6, max_radius)
    return (float(c[0] - r), float(c[0] + r), float(c[1] - r), float(c[1] + r))


def _counts(n: int, k: int) -> list[int]:
    return [n // k + (1 if i < n % k else 0) for i in range(k)]


def _moons(n: int, noise: float, rng: np.random.Generator, k: int) -> Points:
    n0, n1 = _counts(n, 2)
    a, b = rng.uniform(0, np.pi, n0), rng.uniform(0, np.pi, n1)
    x = np.concatenate([np.c_[np.cos(a), np.sin(a)], np.c_[1 - np.cos(b), 0.5 - np.sin(b)]])
    return x + noise * rng.standard_normal(x.shape), np.r_[np.zeros(n0), np.ones(n1)]


def _circles(n: int, noise: float, rng: np.random.Generator, k: int) -> Points:
    """Two concentric circles of radii 1 and 0.5 (class 1 is the inner one)."""
    n0, n1 = _counts(n, 2)
    a = rng.uniform(0, 2 * np.pi, n)
    r = np.r_[np.ones(n0), 0.5 * np.ones(n1)]
    x = r[:, None] * np.c_[np.cos(a), np.sin(a)]
    return x + noise * rng.standard_normal(x.shape), np.r_[np.zeros(n0), np.ones(n1)]


RING_INNER, RING_ANNULUS = 1.0, (2.0, 3.0)


def _rings(n: int, noise: float, rng: np.random.Generator, k: int) -> Points:
    """A disk of radius 1 (class 0) inside an annulus 2 <= r <= 3 (class 1), uniform by area."""
    n0, n1 = _counts(n, 2)
    r0 = RING_INNER * np.sqrt(rng.uniform(0, 1, n0))
    lo, hi = RING_ANNULUS
    r1 = np.sqrt(rng.uniform(lo**2, hi**2, n1))
    a = rng.uniform(0, 2 * np.pi, n)
    r = np.r_[r0, r1]
    x = r[:, None] * np.c_[np.cos(a), np.sin(a)]
    return x + noise * rng.standard_normal(x.shape), np.r_[np.zeros(n0), np.ones(n1)]


def _spirals(n: int, noise: float, rng: np.random.Generator, k: int) -> Points:
    cs = _counts(n, k)
    xs, ys = [], []
    for c, m in enumerate(cs):
        t = np.sqrt(rng.uniform(0, 1, m)) * 2.5 * np.pi + 0.3
        a = t + 2 * np.pi * c / k
        xs.append(t[:, None] / (2.5 * np.pi) * 2 * np.c_[np.cos(a), np.sin(a)])
        ys.append(np.full(m, c))
    x = np.concatenate(xs)
    return x + noise * rng.standard_normal(x.shape), np.concatenate(ys)


def _xor(n: int, noise: float, rng: np.random.Generator, k: int) -> Points:
    x = rng.uniform(-1, 1, (n, 2))
    y = (x[:, 0] * x[:, 1] < 0).astype(float)
    return x + noise * rng.standard_normal(x.shape), y


def _checkerboard(n: int, noise: float, rng: np.random.Generator, k: int) -> Points:
    x = rng.uniform(-2, 2, (n, 2))
    y = ((np.floor(x[:, 0]) + np.floor(x[:, 1])) % 2).astype(float)
    return x + noise * rng.standard_normal(x.shape), y


def _blobs(n: int, noise: float, rng: np.random.Generator, k: int) -> Points:
    cs = _counts(n, k)
    ang = 2 * np.pi * np.arange(k) / k
    centres = 2.0 * np.c_[np.cos(ang), np.sin(ang)]
    x = np.concatenate([centres[c] + (0.35 + noise) * rng.standard_normal((m, 2)) for c, m in enumerate(cs)])
    return x, np.concatenate([np.full(m, c) for c, m in enumerate(cs)])


Points = tuple[np.ndarray, np.ndarray]
"""What a generator returns: points (n, 2) and labels (n,)."""
Generator = Callable[[int, float, np.random.Generator, int], Points]

DATASETS: dict[str, Generator | None] = {
    "moons": _moons,
    "circles": _circles,
    "rings": _rings,
    "spirals": _spirals,
    "xor": _xor,
    "checkerboard": _checkerboard,
    "blobs": _blobs,
    "csv": None,  # the user's own points: see load_csv
}


def split(x: np.ndarray, y: np.ndarray, test_fraction: float, rng: np.random.Generator) -> Dataset:
    """Shuffle and split into train and test (at least one training point per class stays in train)."""
    n = len(x)
    perm = rng.permutation(n)
    n_test = int(round(test_fraction * n))
    n_test = min(n_test, n - 2)
    x, y = x[perm].astype(np.float32), y[perm].astype(np.int64)
    k = int(y.max()) + 1
    return Dataset(x[n_test:], y[n_test:], x[:n_test], y[:n_test], k)


def make_dataset(config: Config, csv: Dataset | tuple[np.ndarray, np.ndarray] | None = None) -> Dataset:
    """The config's dataset, seeded by ``config.seed``. For ``dataset=csv`` pass the loaded points."""
    rng = np.random.default_rng(config.seed)
    if config.dataset == "csv":
        if csv is None:
            raise DataError("dataset=csv needs the points: upload a CSV file (columns x1, x2, label)")
        if isinstance(csv, Dataset):
            return csv
        x, y = csv
        return split(np.asarray(x), np.asarray(y), config.test_fraction, rng)
    gen = DATASETS[config.dataset]
    assert gen is not None  # only csv has no generator
    x, y = gen(config.n_samples, config.noise, rng, config.n_classes)
    return split(x, y, config.test_fraction, rng)


def load_csv(
    source: str | bytes | bytearray | IO[bytes] | IO[str],
    *,
    max_rows: int = MAX_CSV_ROWS,
    max_bytes: int = MAX_CSV_BYTES,
) -> Points:
    """Read a CSV with columns ``x1, x2, label`` from a path, bytes or text.

    Returns ``(x, y)``: float32 points of shape (n, 2) and labels 0..k-1 of shape (n,)
    (labels are renumbered in sorted order). Raises DataError with a clear message
    for a wrong header, non-numbers, NaN or inf, a single class, or too many rows.
    """
    if isinstance(source, (bytes, bytearray)):
        raw = bytes(source)
    elif hasattr(source, "read"):
        got = source.read(max_bytes + 1)
        raw = got.encode() if isinstance(got, str) else got
    elif isinstance(source, str) and "\n" in source:
        raw = source.encode()
    else:
        with open(source, "rb") as fh:
            raw = fh.read(max_bytes + 1)
    if len(raw) > max_bytes:
        raise DataError(f"CSV file is too large: more than {max_bytes // 1000} kB")
    if b"\x00" in raw:
        raise DataError("this is not a text CSV file (it contains binary data)")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise DataError("CSV file is not UTF-8 text") from None
    lines = [ln for ln in io.StringIO(text).read().splitlines() if ln.strip()]
    if not lines:
        raise DataError("CSV file is empty; expected a header x1,x2,label and rows of numbers")
    header = [h.strip().lower() for h in lines[0].split(",")]
    if header != ["x1", "x2", "label"]:
        raise DataError(f"CSV header must be x1,x2,label; got {echo(','.join(header))}")
    rows = lines[1:]
    if len(rows) > max_rows:
        raise DataError(f"CSV has {len(rows)} rows; at most {max_rows} are allowed")
    if len(rows) < 4:
        raise DataError(f"CSV has {len(rows)} data rows; at least 4 are needed")
    data = np.empty((len(rows), 3))
    for i, ln in enumerate(rows, start=2):
        cells = ln.split(",")
        if len(cells) != 3:
            raise DataError(f"CSV line {i}: expected 3 values (x1,x2,label), got {len(cells)}")
        try:
            data[i - 2] = [float(c) for c in cells]
        except ValueError:
            raise DataError(f"CSV line {i}: not a number in {echo(ln.strip())}") from None
    if not np.isfinite(data).all():
        bad = int(np.nonzero(~np.isfinite(data).all(1))[0][0]) + 2
        raise DataError(f"CSV line {bad}: NaN or infinite values are not allowed")
    # checked in float32, the dtype training uses: 1e300 is finite in float64 and inf in float32
    with np.errstate(over="ignore"):
        x = data[:, :2].astype(np.float32)
    big = ~(np.abs(x) <= MAX_COORD).all(1)
    if big.any():
        i = int(np.nonzero(big)[0][0])
        raise DataError(
            f"CSV line {i + 2}: coordinate {echo(float(np.abs(data[i, :2]).max()))} is too large; "
            f"|x1| and |x2| must be at most {MAX_COORD:.0e} (training uses float32): rescale the points"
        )
    labels = data[:, 2]
    if (labels != np.round(labels)).any():
        raise DataError("CSV labels must be whole numbers (class ids)")
    far = ~(np.abs(labels) <= MAX_LABEL)
    if far.any():
        i = int(np.nonzero(far)[0][0])
        raise DataError(
            f"CSV line {i + 2}: label {echo(float(labels[i]))} is not a small class id; labels must "
            f"be whole numbers from -{MAX_LABEL} to {MAX_LABEL}"
        )
    classes, y = np.unique(labels.astype(np.int64), return_inverse=True)
    if len(classes) < 2:
        raise DataError(f"CSV has a single class ({int(classes[0])}); at least two are needed")
    if len(classes) > 8:
        raise DataError(f"CSV has {len(classes)} classes; at most 8 are allowed")
    return x, y.astype(np.int64)
