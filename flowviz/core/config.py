"""One frozen, validated description of a run.

Every key, its default, its allowed range and a one-line reason live in the
field metadata below; parsing (JSON, URL query strings, ``--set KEY=VALUE``)
and validation are driven by that single table, as in TensorFlow Playground's
state object. The key names appear in links on lecturers' slides: never
rename one.

The upper limits of the keys that set a run's cost (``n_samples`` <= 20,000,
``n_steps`` <= 256, ``width`` <= 256, ``lift`` <= 8, ``train_steps`` <= 20,000,
...: ``SERVER_LIMITED``) keep a single user from tying up a shared server. They
are hard for links, the page and the server's runs (``Config.from_query``,
``check_server_limits``); the Python API and the command line may go beyond
them with a :class:`FlowvizWarning` naming the limit (a convergence study at
L = 1024 is a notebook's business), up to what memory allows
(``flowviz.core.cost``). Every other bound (types, choices, noise <= 2, ...)
holds everywhere.
"""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from collections.abc import Mapping
from dataclasses import Field, dataclass, field
from types import FrameType
from typing import Any, cast

from .errors import ConfigError, FlowvizError, FlowvizWarning, echo

__all__ = ["Config", "CHOICES", "LIMITS", "SERVER_LIMITED", "value_range"]

# Keys whose upper limit only bounds a server's runs (they multiply its cost); the library may go beyond.
SERVER_LIMITED = (
    "n_samples",
    "width",
    "knots",
    "lift",
    "mlp_depth",
    "n_steps",
    "mc_samples",
    "train_steps",
    "batch_size",
)


def _opt(
    default: Any,
    help: str,
    *,
    choices: tuple[str, ...] | None = None,
    lo: float | None = None,
    hi: float | None = None,
    lo_open: bool = False,
) -> Any:
    meta = {"help": help, "choices": choices, "lo": lo, "hi": hi, "lo_open": lo_open}
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class Config:
    """A complete, validated run description (data, field, discretisation, head, training, seed, device)."""

    # --- data
    dataset: str = _opt(
        "moons",
        "toy 2-D dataset",
        choices=("moons", "circles", "rings", "spirals", "xor", "checkerboard", "blobs", "csv"),
    )
    n_samples: int = _opt(1000, "number of points (train + test)", lo=4, hi=20_000)
    noise: float = _opt(0.1, "noise level of the generator", lo=0.0, hi=2.0)
    n_classes: int = _opt(3, "classes for spirals (arms) and blobs", lo=2, hi=8)
    test_fraction: float = _opt(0.2, "share of points held out for testing", lo=0.0, hi=0.9)
    seed: int = _opt(0, "seeds data, initial weights, noise and mini-batches", lo=0, hi=2**31 - 1)
    # --- velocity field v(t, x)
    field: str = _opt(
        "two_layer",
        "velocity-field family (two_layer is the paper's eq. 2)",
        choices=("two_layer", "mlp", "antisymmetric"),
    )
    width: int = _opt(16, "hidden width of the field", lo=1, hi=256)
    activation: str = _opt(
        "tanh", "activation a in the field", choices=("relu", "tanh", "sigmoid", "softplus", "leaky_relu")
    )
    time_mode: str = _opt(
        "per_step",
        "per_step: a ResNet; tied: one field for all t; continuous: knots in t",
        choices=("per_step", "tied", "continuous"),
    )
    knots: int = _opt(8, "knots of the piecewise-linear weights (time_mode=continuous)", lo=2, hi=64)
    lift: int = _opt(
        0,
        "extra zero coordinates p: the flow acts in R^(2+p). Nested rings need p >= 1 (augmented "
        "neural ODEs, Dupont, Doucet & Teh 2019); the paper's footnote 1 only embeds equal widths",
        lo=0,
        hi=8,
    )
    mlp_depth: int = _opt(2, "hidden layers of the mlp field", lo=2, hi=6)
    time_input: bool = _opt(True, "feed t to the mlp field as an extra input")
    gamma: float = _opt(0.1, "damping of the antisymmetric field: linear part K - K^T - gamma I", lo=0.0, hi=10.0)
    # --- discretisation of [0, T]
    horizon: float = _opt(1.0, "horizon T of the flow", lo=0.0, hi=100.0, lo_open=True)
    n_steps: int = _opt(16, "number of steps (blocks) L", lo=1, hi=256)
    partition: str = _opt(
        "uniform", "uniform steps T/L, or geometric steps growing by partition_ratio", choices=("uniform", "geometric")
    )
    partition_ratio: float = _opt(1.1, "ratio s_(k+1) / s_k of a geometric partition", lo=0.1, hi=10.0)
    scheme: str = _opt(
        "euler",
        "time stepper (euler: the field at time t_k and point x_(k-1), eq. 10); plain drops "
        "the shortcut: x_k = V_k(x_(k-1)), a map, not a small step",
        choices=("euler", "midpoint", "rk4", "plain"),
    )
    # --- terminal function f = u(T, .)
    head: str = _opt(
        "learned",
        "learned: training also fits the linear softmax f; fixed: f = u(T, .) is given, the "
        "paper's inverse problem, so the flow alone must sort the classes",
        choices=("learned", "fixed"),
    )
    # --- viscosity: flowviz's reading of the paper's section 4, item 1 (the paper gives no equation)
    viscosity: float = _opt(
        0.0,
        "eps in d_t u + v.grad u + eps Lap u = 0 (flowviz's reading of the paper's "
        "section 4, item 1): stochastic characteristics dX = v dt + sqrt(2 eps) dW, "
        "u(0, x) = E f(X_T)",
        lo=0.0,
        hi=1.0,
    )
    mc_samples: int = _opt(16, "Monte-Carlo samples for u(0, x) = E f(X_T) when eps > 0", lo=1, hi=256)
    # --- training (the inverse problem)
    optimizer: str = _opt("adam", "optimiser", choices=("adam", "sgd"))
    lr: float = _opt(0.01, "learning rate", lo=0.0, hi=10.0, lo_open=True)
    train_steps: int = _opt(300, "optimiser steps", lo=0, hi=20_000)
    batch_size: int = _opt(0, "mini-batch size; 0 = full batch", lo=0, hi=20_000)
    weight_decay: float = _opt(
        0.001, "L2 weight decay (a little keeps the flow from stretching the plane without bound)", lo=0.0, hi=1.0
    )
    smoothness: float = _opt(
        0.0, "lambda of sum_k |theta_k - theta_(k-1)|^2 / s_k (paper, section 3.3)", lo=0.0, hi=100.0
    )
    kinetic: float = _opt(0.0, "weight of the kinetic energy sum_k s_k |V_k(x)|^2", lo=0.0, hi=100.0)
    device: str = _opt("auto", "auto picks cuda, then mps, then cpu", choices=("auto", "cpu", "cuda", "mps"))

    def __post_init__(self) -> None:
        beyond = []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.type == "float" and isinstance(v, (int, float)) and not isinstance(v, bool):
                object.__setattr__(self, f.name, float(v) + 0.0)  # 2 and 2.0 are one config; -0.0 + 0.0 is 0.0
            if _check(f, getattr(self, f.name), server=False):
                beyond.append(f)
        if self.batch_size > self.n_samples:
            raise ConfigError(f"batch_size={self.batch_size} is larger than n_samples={self.n_samples}")
        from .timegrid import unresolved_step

        why = unresolved_step(*self.times_key())
        if why:
            raise ConfigError(f"horizon={self.horizon!r}, n_steps={self.n_steps}, partition={self.partition}: {why}")
        for f in beyond:
            warnings.warn(
                FlowvizWarning(
                    f"{f.name}={getattr(self, f.name)} is beyond the server's limit {f.name} <= {f.metadata['hi']} "
                    f"(flowviz.LIMITS): allowed in Python and on the command line, refused by links and the page"
                ),
                stacklevel=_outside(),
            )

    def check_server_limits(self) -> Config:
        """Raise ConfigError if a key is beyond its server limit (LIMITS); links, the page and a server's
        runs call this. Returns the config itself."""
        for f in dataclasses.fields(self):
            _check(f, getattr(self, f.name), server=True)
        return self

    # ------------------------------------------------------------------ I/O
    @classmethod
    def keys(cls) -> tuple[str, ...]:
        """All config keys, in declaration order."""
        return tuple(f.name for f in dataclasses.fields(cls))

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Config:
        """Build from a mapping of typed values (JSON). Missing keys take defaults; unknown keys are an error."""
        if not isinstance(d, Mapping):
            raise ConfigError(f"a config must be a JSON object of key: value, got {type(d).__name__}")
        _reject_unknown(d)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        return cls(**{k: _coerce(fields[k], v, from_text=False) for k, v in d.items()})

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready dict of every key."""
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_json(cls, text: str | bytes) -> Config:
        """Build from JSON text (size, nesting and number lengths bounded before parsing)."""
        from .safejson import load_json

        try:
            d = load_json(text, what="the config", max_chars=100_000)
        except FlowvizError as e:
            raise ConfigError(str(e)) from None
        return cls.from_dict(d)

    @classmethod
    def from_query(cls, q: Mapping[str, Any], *, server: bool = True) -> Config:
        """Build from flat URL query parameters (string values; a list takes its last value).

        A link is a server's input: every limit is hard (``server=False`` lets the cost keys go beyond, with
        a warning, as the library's own constructor does)."""
        _reject_unknown(q)
        fields = {f.name: f for f in dataclasses.fields(cls)}
        vals = {}
        for k, v in q.items():
            if isinstance(v, (list, tuple)):
                v = v[-1] if v else ""
            vals[k] = _coerce(fields[k], v, from_text=True)
            if server:
                _check(fields[k], vals[k], server=True)
        return cls(**vals)

    def to_query(self) -> dict[str, str]:
        """Flat string parameters for a URL: every key, so a link means the same run next year."""
        return {k: _to_text(v) for k, v in self.to_dict().items()}

    def replace(self, **changes: Any) -> Config:
        """A validated copy with some keys changed."""
        _reject_unknown(changes)
        fields = {f.name: f for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: _coerce(fields[k], v, from_text=False) for k, v in changes.items()})

    def with_sets(self, assignments: list[str]) -> Config:
        """Apply command-line style ``KEY=VALUE`` strings."""
        q: dict[str, str] = {}
        for a in assignments:
            if "=" not in a:
                raise ConfigError(f"expected KEY=VALUE, got {echo(a)}")
            k, v = a.split("=", 1)
            q[k.strip()] = v.strip()
        _reject_unknown(q)
        fields = {f.name: f for f in dataclasses.fields(self)}
        return dataclasses.replace(self, **{k: _coerce(fields[k], v, from_text=True) for k, v in q.items()})

    # ----------------------------------------------------------- derived
    @property
    def dim(self) -> int:
        """Dimension d = 2 + p of the space the flow acts on."""
        return 2 + self.lift

    @property
    def classes(self) -> int:
        """Number of classes the generator makes (csv data decides its own)."""
        return {"spirals": self.n_classes, "blobs": self.n_classes}.get(self.dataset, 2)

    def times_key(self) -> tuple[float, int, str, float]:
        """What fixes the partition t_0 .. t_L."""
        ratio = self.partition_ratio if self.partition == "geometric" else 1.0
        return (self.horizon, self.n_steps, self.partition, ratio)

    def key(self) -> str:
        """A stable hash of the whole config, for caches and run registries."""
        import hashlib

        return hashlib.sha256(json.dumps(self.to_dict(), sort_keys=True).encode()).hexdigest()[:16]


CHOICES: dict[str, tuple[str, ...]] = {
    f.name: f.metadata["choices"] for f in dataclasses.fields(Config) if f.metadata["choices"]
}
LIMITS: dict[str, tuple[float, float]] = {
    f.name: (f.metadata["lo"], f.metadata["hi"]) for f in dataclasses.fields(Config) if f.metadata["hi"] is not None
}


def _outside() -> int:
    """The stack level of the first caller outside this module and the dataclass machinery (for warnings)."""
    import sys

    frame: FrameType | None = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_code.co_filename in (__file__, dataclasses.__file__, "<string>"):
        frame, level = frame.f_back, level + 1
    return level


def _reject_unknown(d: Mapping[str, object]) -> None:
    unknown = [k for k in d if k not in Config.__dataclass_fields__]
    if unknown:
        raise ConfigError(f"unknown config key {echo(unknown[0])}; valid keys: {', '.join(Config.keys())}")


def value_range(key: str) -> tuple[float, float] | tuple[int, int]:
    """The inclusive range of a numeric key, from its field metadata: what the config accepts, and so what
    the page's widget allows. An open lower bound (lo < v) becomes the next representable number above lo."""
    f = Config.__dataclass_fields__[key]
    lo, hi = f.metadata["lo"], f.metadata["hi"]
    if _type_of(f) is int:
        return int(lo), int(hi)
    return (math.nextafter(float(lo), math.inf) if f.metadata["lo_open"] else float(lo)), float(hi)


def _type_of(f: Field[Any]) -> type:
    # the annotations are strings here (``from __future__ import annotations``)
    return {"str": str, "int": int, "float": float, "bool": bool}[cast(str, f.type)]


def _coerce(f: Field[Any], v: object, *, from_text: bool) -> Any:
    """Turn a JSON or text value into the key's type, or raise a ConfigError naming key and value."""
    t = _type_of(f)
    bad = ConfigError(f"{f.name}={echo(v)} is not a valid {t.__name__}")
    if isinstance(v, str) and len(v) > 200:
        raise ConfigError(f"{f.name}: value is too long ({len(v)} characters)")
    if t is bool:
        if isinstance(v, bool):
            return v
        if isinstance(v, str) and v.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(v, str) and v.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{f.name}={echo(v)} is not a boolean (use true or false)")
    if t is str:
        if not isinstance(v, str):
            raise bad
        return v.strip()
    if isinstance(v, bool):
        raise bad
    if isinstance(v, str):
        try:
            num = float(v.strip()) if t is float else _parse_int(v)
        except ValueError:
            raise bad from None
    elif isinstance(v, (int, float)):
        num = v
    else:
        raise bad
    if t is int:
        if isinstance(num, float):
            if not math.isfinite(num) or num != int(num):
                raise ConfigError(f"{f.name}={echo(v)} must be a whole number")
            num = int(num)
        return int(num)
    return float(num)


def _parse_int(s: str) -> int:
    s = s.strip()
    try:
        return int(s)
    except ValueError:
        x = float(s)  # accepts "32.0"; the caller rejects non-integers
        return x  # type: ignore[return-value]


def _check(f: Field[Any], v: object, *, server: bool) -> bool:
    """Raise ConfigError for a value of the wrong type or out of range. ``server``: the limits of
    SERVER_LIMITED keys are hard too; otherwise a value beyond one returns True (the caller warns)."""
    m = f.metadata
    t = _type_of(f)
    if t is float and isinstance(v, int) and not isinstance(v, bool):
        v = float(v)
    if not isinstance(v, t) or (t is int and isinstance(v, bool)):
        raise ConfigError(f"{f.name}={echo(v)} must be of type {t.__name__}")
    if m["choices"] and v not in m["choices"]:
        raise ConfigError(f"{f.name}={echo(v)} is not one of: {', '.join(m['choices'])}")
    if t in (int, float):
        if isinstance(v, float) and not math.isfinite(v):
            raise ConfigError(f"{f.name}={echo(v)} must be a finite number")
        lo, hi = m["lo"], m["hi"]
        if lo is not None and (v < lo or (m["lo_open"] and v == lo)):
            rel = ">" if m["lo_open"] else ">="
            # (the upper limit named only where it holds: in Python and on the command line a server's is not hard)
            hard_hi = hi is not None and (server or f.name not in SERVER_LIMITED)
            raise ConfigError(
                f"{f.name}={echo(v)} is out of range: must be {rel} {lo}" + (f" and <= {hi}" if hard_hi else "")
            )
        if hi is not None and v > hi:
            if not server and f.name in SERVER_LIMITED:
                return True
            raise ConfigError(f"{f.name}={echo(v)} is out of range: must be <= {hi} (hard limit)")
    return False


def _to_text(v: object) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return repr(v) if isinstance(v, float) else str(v)
