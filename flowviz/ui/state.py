"""The page's state: one ``PageState`` per session, built once from the link, changed only by its methods.

No streamlit here: the page keeps the object under one session key (``page.STATE_KEY``) and calls the
methods; tests drive them directly. Widgets' own values stay in Streamlit's session state under their
``w_*`` keys; a method that changes the config asks the page to forget them (``take_widget_reset``), so
the sidebar shows the new values.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..core.config import Config
from ..core.data import load_csv
from ..core.errors import FlowvizError, echo
from ..core.points import check_points
from ..core.presets import preset_info
from ..runfiles.files import classes_mismatch, config_from_bytes, model_from_bytes
from . import links

__all__ = ["PageState"]

NO_SCENARIO = ""
DRAWN = "drawn points"  # the csv_name of points drawn on the page (or carried by the link's points=)


@dataclass
class PageState:
    """Everything a page remembers between reruns (besides its widgets' values)."""

    config: Config = field(default_factory=Config)
    flags: dict[str, Any] = field(default_factory=lambda: {n: f.default for n, f in links.FLAGS.items()})
    notices: tuple[str, ...] = ()  # what the link got wrong, shown on every rerun until Reset
    run_key: str | None = None  # the run shown, and the config it was started with
    run_config: Config | None = None
    compare_key: str | None = None  # a scenario's second run
    csv: tuple[np.ndarray, np.ndarray] | None = None  # uploaded points (x (n, 2) float32, y (n,) int64)
    csv_name: str | None = None
    autostart: bool = True  # start the config's run on the next rerun
    view_pick: str | None = None  # the view the user (or a scenario) chose
    imported: str | None = None  # the id of the last imported file (an upload box keeps its file)
    shown_final: tuple | None = None  # the finished run whose full views are drawn
    sweep_job: str | None = None
    c2f_job: str | None = None
    sweep_live: bool = False
    widget_reset: bool = False
    widget_gen: int = 0  # the sidebar widgets' generation: a new one each time the config changes under them
    instrument_pick: str | None = None  # the Instruments sub-view a scenario opens with
    seen: dict[str, tuple] = field(default_factory=dict)  # the last selection handled, per plot
    draw_message: tuple[str, str] | None = None  # (kind, text) about the drawing, shown once
    hand_notice: str | None = None  # what a Stop, Pause or Step pressed here did, or why not (shown until the next)
    offer_copy: bool = False  # that notice offers this window its own copy of a shared run
    retired: bool = False  # Reset replaced this state: its widgets' callbacks do nothing (``callback``)

    # ------------------------------------------------------------ built from a link
    @classmethod
    def from_link(cls, params: Mapping[str, Any]) -> PageState:
        """The state of a page opened with these query parameters (never raises: see ``links.parse_link``)."""
        link = links.parse_link(params)
        state = cls(
            config=link.config,
            flags=dict(link.flags),
            notices=link.notices,
            view_pick=link.view,
            instrument_pick=links.VIEWS[link.flags["view"]][1]
            if link.flags["view"]
            else _instrument_of(link.flags["scenario"]),
        )
        if state.drawn:  # points in the link are the page's data (validated as a CSV by core.points)
            state.csv, state.csv_name = links.drawn_arrays(state.drawn), DRAWN
            state.csv = (state.csv[0].astype(np.float32), state.csv[1].astype(np.int64))
        return state

    @property
    def scenario(self) -> str | None:
        return self.flags["scenario"]

    @property
    def present(self) -> bool:
        return self.flags["present"]

    @property
    def hidden(self) -> frozenset:
        return self.flags["hide"]

    @property
    def probe(self) -> tuple[float, float] | None:
        return self.flags["probe"]

    @property
    def drawn(self) -> tuple:
        return self.flags["points"]

    def url(self, config: Config | None = None) -> dict[str, str]:
        """The page's link: every config key and the flags that are set."""
        return links.link_of(config or self.config, self.flags)

    # ------------------------------------------------------------ changes
    def apply_scenario(self, name: str) -> None:
        """Switch to a scenario: its config, its compared run, its view (the empty name keeps the config)."""
        if name == NO_SCENARIO:
            self.flags["scenario"] = None
            return
        info = preset_info(name)
        self.flags["scenario"] = name
        self._new_config(info["config"], autostart=True)
        self.view_pick = info["view"]
        self.instrument_pick = _instrument_of(name)
        self.flags["view"] = None  # the scenario's own view

    def choose(self, config: Config) -> None:
        """The sidebar's validated config."""
        self.config = config

    def set_present(self, on: bool) -> None:
        self.flags["present"] = bool(on)

    def pick_view(self, name: str, instrument: str | None = None) -> None:
        """The view on screen (and the Instruments sub-view): the link keeps it as view=."""
        self.view_pick = name
        if name != "Instruments" or instrument is not None:
            self.flags["view"] = links.view_of(name, instrument)

    def take_autostart(self) -> bool:
        """True once after the page opens, a scenario is picked or a config imported."""
        go, self.autostart = self.autostart, False
        return go

    def take_widget_reset(self) -> bool:
        """True once after the config changed under the sidebar: its widgets are drawn anew (a new generation,
        ``widget_gen``) and show the new values."""
        go, self.widget_reset = self.widget_reset, False
        self.widget_gen += go
        return go

    def start(self, registry, data, config: Config, *, restart: bool = False) -> None:
        """Start (or join) the run of ``config`` on ``data``, and the scenario's compared run if it has one."""
        run = registry.start(config, data, restart=restart)
        self.run_key, self.run_config = run.key, config
        changes = links.compare_changes(self.scenario)
        self.compare_key = registry.start(config.replace(**changes), data, restart=restart).key if changes else None

    def finished_shown(self, mark: tuple) -> bool:
        """Record that the final views of ``mark`` (run, status, compared run) are drawn; False if they were."""
        if self.shown_final == mark:
            return False
        self.shown_final = mark
        return True

    def watch_sweep(self, job_key: str) -> None:
        self.sweep_job, self.sweep_live = job_key, True

    def watch_c2f(self, job_key: str) -> None:
        self.c2f_job, self.sweep_live = job_key, True

    def sweep_settled(self) -> None:
        self.sweep_live = False

    # ------------------------------------------------------------ the instruments
    def take_instrument_pick(self) -> str | None:
        go, self.instrument_pick = self.instrument_pick, None
        return go

    def new_selection(self, plot: str, signature: tuple) -> bool:
        """True for a selection on ``plot`` not handled before (Streamlit returns it on every rerun)."""
        if self.seen.get(plot) == signature:
            return False
        self.seen[plot] = signature
        return True

    def set_probe(self, x1: float, x2: float) -> None:
        """The probe at (x1, x2); ConfigError unless finite and within ``probe=``'s bounds (check_points)."""
        self.flags["probe"] = tuple(float(v) for v in check_points((x1, x2))[0])

    def add_drawn(self, points: list[tuple[float, float, int]]) -> None:
        self.flags["points"] = tuple(self.drawn) + tuple(points)

    def undo_drawn(self) -> None:
        self.flags["points"], self.seen = tuple(self.drawn)[:-1], {}  # the same spot may be clicked again

    def clear_drawn(self) -> None:
        self.flags["points"], self.seen = (), {}

    def use_drawn(self) -> str | None:
        """Train on the drawn points: validated as a link's points (a CSV's checks and limits), they become the
        csv data and the run starts on the next rerun, in the open scenario if any (its text, its compared run
        and the view stay). An error message, or None; nothing changes on error."""
        from ..core.points import decode_points, encode_points

        try:
            x, y = decode_points(encode_points(*links.drawn_arrays(self.drawn)))
        except FlowvizError as e:
            return f"Drawn points: {e}. Nothing was trained; the previous run stays."
        self.csv, self.csv_name = (x.astype(np.float32), y.astype(np.int64)), DRAWN
        self.flags["step"] = None
        self._new_config(self.config.replace(dataset="csv"), autostart=True)
        return None

    @property
    def drawn_data(self) -> bool:
        """The page's csv data are the drawn points."""
        return self.csv is not None and self.csv_name == DRAWN

    def reset(self) -> PageState:
        """The state Reset leads to: the default page, in presentation mode if this one is."""
        fresh = PageState.from_link({"present": "1"} if self.present else {})
        fresh.widget_reset, fresh.widget_gen = True, self.widget_gen  # (new widgets: see take_widget_reset)
        self.retired = True
        return fresh

    def callback(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` as a widget's callback on this state: it does nothing once Reset has replaced the state (the
        rerun after a Reset calls the callbacks of the old page's widgets, whose keys Reset has cleared)."""

        @functools.wraps(fn)
        def run(*args, **kwargs):
            if not self.retired:
                return fn(*args, **kwargs)

        return run

    # ------------------------------------------------------------ the training step and the layer frame
    def set_step(self, step: int | None) -> None:
        """Show the run at this training step (None: its latest state)."""
        self.flags["step"] = None if step is None else int(step)

    def set_frame(self, k: int | None) -> None:
        """Open the layer animations at frame ``k``."""
        self.flags["k"] = None if k is None else int(k)

    def set_speed(self, ms: int | None) -> None:
        """The layer animation's frame duration (ms), within links.SPEED_MS; None: the figures' own."""
        lo, hi = links.SPEED_MS
        self.flags["speed"] = None if ms is None else min(hi, max(lo, int(ms)))

    def tell(self, text: str | None, *, offer_copy: bool = False) -> None:
        """What a control pressed in this window did (or why not), shown until the next one."""
        self.hand_notice, self.offer_copy = text, offer_copy

    # ------------------------------------------------------------ user files
    def upload_csv(self, name: str, raw: bytes) -> tuple[bool, str]:
        """Validate an uploaded CSV: (True, what was loaded) or (False, why; the previous points stay)."""
        self.csv_name = name
        try:
            self.csv = load_csv(raw)
        except FlowvizError as e:
            return False, f"{echo(name)}: {e}. The previous data stay in place."
        return True, f"Loaded {len(self.csv[0])} points from {echo(name)}; choose dataset 'csv'."

    def first_sight(self, file_id: str) -> bool:
        """True the first time the import box holds this file (it keeps the file across reruns)."""
        new, self.imported = file_id != self.imported, file_id
        return new

    def import_file(self, name: str, raw: bytes, registry, data_for: Callable) -> str | None:
        """Open an exported run (.safetensors) or config (.json); an error message, or None.

        Never unpickles: safetensors and JSON only; nothing changes when anything is wrong.
        ``data_for(config, state)`` gives the data of a config (the run is shown on them).
        """
        try:
            if name.endswith(".json"):
                # the page is a server's: its limits hold for imported configs too (the library may go beyond)
                self._new_config(config_from_bytes(raw).check_server_limits(), autostart=True)
                self.flags["scenario"] = None
                return None
            if not name.endswith(".safetensors"):
                raise FlowvizError("import a model.safetensors or a config.json written by flowviz")
            model = model_from_bytes(raw, server=True)
            data = data_for(model.config, self)
            if data.n_classes != model.n_classes:  # uploaded points (dataset=csv) decide their own classes
                raise FlowvizError(classes_mismatch(model.n_classes, data.n_classes, "the uploaded points"))
            run = registry.adopt(model, data, key_suffix=hashlib.sha256(raw).hexdigest()[:12])
        except FlowvizError as e:
            return f"{echo(name)}: {e}. Nothing was changed."
        self._new_config(model.config, autostart=False)
        self.flags["scenario"] = None
        self.run_key, self.run_config = run.key, model.config
        return None

    def _new_config(self, config: Config, *, autostart: bool) -> None:
        self.config, self.autostart, self.widget_reset = config, autostart, True


def _instrument_of(scenario: str | None) -> str | None:
    return preset_info(scenario).get("instrument") if scenario else None
