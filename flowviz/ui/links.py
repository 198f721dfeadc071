"""What a page's link means, as pure functions (no streamlit): tested without a page.

A link's query parameters are config keys (every key of ``Config``, e.g. ``n_steps=32``) and link flags,
the parameters that are not config keys, one row each in ``FLAGS``:

- ``scenario=NAME``: open a curated scenario (its config; the link's config keys override it);
- ``present=1``: presentation mode (sidebar collapsed, large type, figures within 1280 x 720);
- ``hide=data,training,...``: sidebar groups to hide (``GROUPS``; ``upload`` hides the CSV box);
- ``probe=x1,x2``: the point whose characteristic the Instruments view follows;
- ``points=...``: up to 500 points drawn by hand, the data of ``dataset=csv`` (see ``core.points``);
- ``view=NAME``: the view on screen (``VIEWS``: a view of the page, or an instrument), so a shared link opens
  where the lecturer was.
- ``step=S``: show the run as it was at training step S (its last kept checkpoint <= S);
- ``k=K``: open the layer animations at layer frame K;
- ``speed=MS``: the layer animation's frame duration in milliseconds;
- ``room=open``: open a room at once (``room_ui``); ``room=CODE``: a page explored from that room.

A new flag is one more row: how its text is read (with notices for bad text), its default, and how it is
written back into the page's link. Bad keys or values never stop the page: each falls back to its default,
named in a notice (plain text; the page escapes it, see ``plaintext``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..core.config import Config
from ..core.errors import FlowvizError, echo
from ..core.points import decode_points, encode_points, format_probe, parse_probe
from ..core.presets import preset_info, preset_names

__all__ = [
    "GROUPS",
    "HIDEABLE",
    "VIEWS",
    "view_of",
    "FLAGS",
    "Flag",
    "Link",
    "parse_link",
    "config_from_query",
    "link_of",
    "compare_changes",
    "is_on",
    "last_values",
    "drawn_arrays",
]

GROUPS = ("data", "field", "discretisation", "head", "training")  # the sidebar's groups, for ?hide=
HIDEABLE = GROUPS + ("upload",)
_ON, _OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def is_on(text) -> bool:
    """A flag's text read as a switch (1, true, yes, on)."""
    return str(text).strip().lower() in _ON


@dataclass(frozen=True)
class Flag:
    """A link parameter that is not a config key."""

    default: Any
    parse: Callable[[str], tuple[Any, list[str]]]  # the link's text -> (value, notices about bad text)
    write: Callable[[Any], str | None]  # value -> the link's text; None leaves it out of the link
    help: str


def _scenario(text: str):
    if not text:
        return None, []
    if text in preset_names():
        return text, []
    return None, [f"Ignored scenario={echo(text)} from the link: no such scenario; valid: {', '.join(preset_names())}"]


def _present(text: str):
    if text.strip().lower() in _ON + _OFF:
        return is_on(text), []
    return False, [f"Ignored present={echo(text)} from the link: use present=1 or present=0"]


def _hide(text: str):
    hidden, notices = set(), []
    for name in (h.strip() for h in text.split(",") if h.strip()):
        if name in HIDEABLE:
            hidden.add(name)
        else:
            notices.append(f"Ignored hide={echo(name)} from the link: valid groups are {', '.join(HIDEABLE)}")
    return frozenset(hidden), notices[:3]


def _probe(text: str):
    try:
        return parse_probe(text), []
    except FlowvizError as e:
        return None, [f"Ignored probe={echo(text)} from the link: {e}"]


def _points(text: str):
    """Drawn points (``core.points``): a tuple of (x1, x2, label); they become the page's csv data."""
    try:
        x, y = decode_points(text)
    except FlowvizError as e:
        return (), [f"Ignored points from the link: {e}"]
    return tuple((float(a), float(b), int(c)) for (a, b), c in zip(x, y)), []


VIEWS = {  # view= in a link -> (the page's view, the Instruments sub-view or None)
    "characteristics": ("Characteristics", None),
    "lifted": ("Lifted space", None),
    "decision": ("Decision surface", None),
    "transport": ("Transport", None),
    "velocity": ("Velocity field", None),
    "diagnostics": ("Diagnostics", None),
    "instruments": ("Instruments", None),
    "probe": ("Instruments", "Probe"),
    "stability": ("Instruments", "Stability region"),
    "volume": ("Instruments", "Volume and density"),
    "grid_solver": ("Instruments", "Grid solver"),
    "adjoint": ("Instruments", "Adjoint"),
    "draw": ("Instruments", "Draw points"),
    "sweep": ("Depth sweep", None),
    "dictionary": ("Dictionary", None),
    "side_by_side": ("Side by side", None),
}


def view_of(view: str | None, instrument: str | None = None) -> str | None:
    """The view= name of a page's view (and Instruments sub-view), or None for a view without one."""
    for name, (v, ins) in VIEWS.items():
        if v == view and ins == (instrument if view == "Instruments" else None):
            return name
    return None


def _view(text: str):
    name = text.strip().lower()
    if not name:
        return None, []
    if name in VIEWS:
        return name, []
    return None, [f"Ignored view={echo(text)} from the link: valid views are {', '.join(VIEWS)}"]


def drawn_arrays(drawn) -> tuple[np.ndarray, np.ndarray]:
    """Drawn (x1, x2, label) triples as points (n, 2) and labels (n,)."""
    a = np.asarray(drawn, dtype=np.float64).reshape(-1, 3)
    return a[:, :2], a[:, 2].astype(int)


def _write_points(drawn) -> str | None:
    if not drawn:
        return None
    try:
        return encode_points(*drawn_arrays(drawn))
    except FlowvizError:
        return None  # more than a link holds: the points stay in the session only


def _room(text: str):
    from ..serve.rooms import CODE_RE

    t = text.strip()
    if t == "open" or CODE_RE.fullmatch(t):
        return t, []
    return None, [f"Ignored room={echo(text)} from the link: use room=open (or a room's code)"]


def _count(name: str, lo: int, hi: int, what: str):
    """A parser of a whole number ``lo`` .. ``hi`` (a flag's text), None when empty."""

    def parse(text: str):
        t = text.strip()
        if not t:
            return None, []
        if t.isdigit() and lo <= int(t) <= hi:
            return int(t), []
        return None, [f"Ignored {name}={echo(text)} from the link: {what}, a whole number from {lo} to {hi}"]

    return parse


def _write_count(v) -> str | None:
    return None if v is None else str(int(v))


SPEED_MS = (20, 5000)  # the layer animation's frame duration, shortest and longest (ms)

FLAGS: dict[str, Flag] = {
    "scenario": Flag(None, _scenario, lambda v: v, "a curated scenario; link keys override its config"),
    "present": Flag(False, _present, lambda v: "1" if v else None, "presentation mode"),
    "hide": Flag(frozenset(), _hide, lambda v: ",".join(sorted(v)) or None, "sidebar groups to hide"),
    "probe": Flag(
        None,
        _probe,
        lambda v: None if v is None else format_probe(v),
        "a point x1,x2 whose characteristic the Instruments view follows",
    ),
    "points": Flag((), _points, _write_points, "points drawn by hand (quantised, URL-safe base64): the csv data"),
    "view": Flag(None, _view, lambda v: v, "the view on screen (a view of the page or an instrument)"),
    "room": Flag(
        None,
        _room,
        lambda v: v if v and v != "open" else None,
        "room=open: open a room at once; room=CODE: a page explored from that room (Back to the room)",
    ),
    "step": Flag(
        None,
        _count("step", 0, 20_000, "a training step"),
        _write_count,
        "the training step shown (the last kept checkpoint at or before it)",
    ),
    "k": Flag(None, _count("k", 0, 256, "a layer"), _write_count, "the layer frame the animations open at"),
    "speed": Flag(
        None,
        _count("speed", *SPEED_MS, "a frame duration in ms"),
        _write_count,
        "the layer animation's frame duration (ms)",
    ),
}


@dataclass(frozen=True)
class Link:
    """A parsed link: the config, every flag's value, the notices about what was ignored, and the view a
    scenario opens with (None without one)."""

    config: Config
    flags: Mapping[str, Any]
    notices: tuple[str, ...]
    view: str | None = None


def last_values(params: Mapping[str, Any]) -> dict[str, str]:
    """One text per key: a repeated key (``?n_steps=4&n_steps=8``) takes its last value."""
    out = {}
    for k, v in params.items():
        if isinstance(v, (list, tuple)):
            v = v[-1] if v else ""
        out[str(k)] = str(v)
    return out


DROPPED = "dropped_parameters"  # the mark of a link larger than Streamlit reads (ui.guards.keep_known)


def _dropped(text: str) -> str:
    if text == "too_long":
        return "This link is too long to read (more than a million characters): it was ignored whole."
    n = f" (it has {int(text):,})" if text.isdigit() and len(text) < 10 else ""
    return (
        f"This link is larger than a page reads: at most 1,000 parameters and 524,288 characters{n}. Only its "
        "flowviz settings and flags were kept (the last value of each); the rest was ignored."
    )


def parse_link(params: Mapping[str, Any]) -> Link:
    """Read a link's query parameters (text, or lists of text): never raises; bad parts become notices."""
    q = last_values(params)
    flags, notices = {}, []
    if DROPPED in q:
        notices.append(_dropped(q.pop(DROPPED)))
    for name, flag in FLAGS.items():
        value, bad = flag.parse(q[name]) if name in q else (flag.default, [])
        flags[name] = value
        notices += bad
    scenario = flags["scenario"]
    base = preset_info(scenario)["config"] if scenario else Config()
    config, bad = config_from_query({k: v for k, v in q.items() if k not in FLAGS}, base)
    view = preset_info(scenario)["view"] if scenario else None
    if flags["view"] is not None:
        view = VIEWS[flags["view"]][0]
    for name, most in (("k", config.n_steps), ("step", config.train_steps)):
        if flags[name] is not None and flags[name] > most:
            bad.append(
                f"Ignored {name}={flags[name]} from the link: this run has {most} "
                f"{'layers' if name == 'k' else 'training steps'}"
            )
            flags[name] = None
    return Link(config, flags, tuple(notices + bad), view)


MAX_NOTICES = 8  # a link with 1,000 bad keys gets eight notices and a count, not a wall of text


def config_from_query(q: Mapping[str, str], base: Config) -> tuple[Config, list[str]]:
    """The config of a link on top of ``base``; bad keys or values fall back, each named in a notice."""
    good, notices = {}, []
    unknown = [k for k in q if k not in Config.keys()]
    if unknown:  # one notice for all of them (each would list every valid key)
        names = ", ".join(echo(k, 40) for k in unknown[:3]) + (f" and {len(unknown) - 3} more" if unknown[3:] else "")
        notices.append(f"Ignored {names} from the link: not a setting; valid keys: {', '.join(Config.keys())}")
    for k, val in q.items():
        if k in unknown:
            continue
        try:
            Config.from_query({**base.to_query(), **good, k: val})
            good[k] = val
        except FlowvizError as e:
            notices.append(f"Ignored {echo(k)} from the link: {e}")
    if len(notices) > MAX_NOTICES:
        notices = notices[: MAX_NOTICES - 1] + [f"... and {len(notices) - MAX_NOTICES + 1} more ignored keys"]
    try:
        return Config.from_query({**base.to_query(), **good}), notices
    except FlowvizError as e:
        return base, notices + [f"The link's settings do not fit together ({e}); using the defaults."]


def link_of(config: Config, flags: Mapping[str, Any]) -> dict[str, str]:
    """The query parameters of a page: every config key, then the flags that differ from their defaults."""
    q = config.to_query()
    for name, flag in FLAGS.items():
        text = flag.write(flags.get(name, flag.default))
        if text is not None:
            q[name] = text
    return q


def compare_changes(name: str | None) -> dict:
    """The config keys a scenario's second run changes (empty without one)."""
    if not name:
        return {}
    info = preset_info(name)
    if info["compare"] is None:
        return {}
    a, b = info["config"], info["compare"]
    return {k: getattr(b, k) for k in Config.keys() if getattr(a, k) != getattr(b, k)}
