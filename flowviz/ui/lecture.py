"""The lecture kit on the page: scenarios, link flags, presentation mode, export and import.

Link flags (query parameters that are not config keys):

- ``scenario=NAME``: open a curated scenario (its config; link keys override it);
- ``present=1``: presentation mode (sidebar collapsed, large type, figures within 1280 x 720);
- ``hide=data,training,...``: sidebar groups to hide (see ``controls.GROUPS``; ``upload`` hides the CSV box).
"""

from __future__ import annotations

import hashlib
import json

import streamlit as st

from .. import plots
from ..core.config import Config
from ..core.errors import FlowvizError
from ..core.presets import preset_info, preset_names
from ..serve import export
from ..serve.runio import model_from_bytes, weights_bytes
from .controls import GROUPS

UI_PARAMS = ("scenario", "present", "hide")
HIDEABLE = GROUPS + ("upload",)
NO_SCENARIO = ""

PRESENT_CSS = """
<style>
  .block-container { padding-top: 1.2rem; padding-bottom: 0.5rem; }
  header[data-testid="stHeader"] { background: transparent; }  /* its controls stay whole, beside the title */
  h5 { padding: 0 0 0.2rem 0; }
</style>
"""


def link_flags(params: dict) -> tuple[str | None, bool, frozenset, list[str]]:
    """(scenario, present, hidden groups, notices) from the URL's non-config parameters."""
    notices = []
    scenario = params.get("scenario") or None
    if scenario is not None and scenario not in preset_names():
        notices.append(f"Ignored `scenario` from the link: unknown scenario {scenario[:40]!r}; "
                       f"valid: {', '.join(preset_names())}")
        scenario = None
    present = str(params.get("present", "")).strip().lower() in ("1", "true", "yes", "on")
    hidden = set()
    for name in (h.strip() for h in str(params.get("hide", "")).split(",") if h.strip()):
        if name in HIDEABLE:
            hidden.add(name)
        else:
            notices.append(f"Ignored `hide={name[:40]}` from the link: valid groups are {', '.join(HIDEABLE)}")
    return scenario, present, frozenset(hidden), notices


def compare_changes(name: str | None) -> dict:
    """The config keys a scenario's second run changes (empty without one)."""
    if not name:
        return {}
    info = preset_info(name)
    if info["compare"] is None:
        return {}
    a, b = info["config"], info["compare"]
    return {k: getattr(b, k) for k in Config.keys() if getattr(a, k) != getattr(b, k)}


def clear_widgets(ss) -> None:
    """Forget the sidebar widgets' own state so they show the new config."""
    for k in [k for k in ss.keys() if str(k).startswith("w_")]:
        del ss[k]


def apply_scenario(ss, name: str) -> None:
    """Switch the page to a scenario: its config, its compared run, its view."""
    if name == NO_SCENARIO:
        ss.scenario = None
        return
    info = preset_info(name)
    ss.scenario = name
    ss.config = info["config"]
    clear_widgets(ss)
    ss.autostart = True
    ss.view_pick = info["view"]


def scenario_picker(ss) -> None:
    """The sidebar's scenario list (first thing a lecturer sees)."""
    names = [NO_SCENARIO] + preset_names()
    cur = ss.get("scenario") or NO_SCENARIO

    def changed():
        apply_scenario(ss, ss.w_scenario_pick)

    st.sidebar.selectbox("Scenario", names, index=names.index(cur), key="w_scenario_pick", on_change=changed,
                         format_func=lambda n: "— your own settings —" if n == NO_SCENARIO
                         else preset_info(n)["title"],
                         help="curated lecture scenarios; each opens with the view that shows its point")


def header(ss) -> None:
    """Title and description of the open scenario (in presentation mode the text waits in a popover)."""
    if ss.get("scenario"):
        info = preset_info(ss.scenario)
        st.markdown(f"##### {info['title']}")
        if not ss.present:
            st.markdown(info["description"])


def about(ss, container) -> None:
    """Presentation mode: the scenario's text behind a button, so the figure keeps the screen."""
    if ss.get("scenario") and ss.present:
        with container.popover("What to look at", width="stretch"):
            st.markdown(preset_info(ss.scenario)["description"])


def style(fig, present: bool):
    return plots.presentation(fig) if present else fig


def _key(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:12]


def export_panel(run, views) -> None:
    """Download buttons; each file is made only when its button is pressed."""
    cfg, model_state = run.config, run.latest.state if run.latest else None
    if model_state is None or views is None or views.live:
        return

    def model():
        from ..core.model import build_model

        m = build_model(cfg, run.data.n_classes)
        m.load_state_dict(model_state)
        m.train(False)
        return m

    metrics = {"step": run.latest.step, "train_loss": run.latest.loss, "train_accuracy": run.latest.train_accuracy,
               "test_accuracy": run.latest.test_accuracy, "test_loss": run.latest.test_loss}
    files = [
        ("characteristics.html", "text/html", "the animated characteristics, interactive, works offline",
         lambda: plots.characteristics(views).to_html(include_plotlyjs=True, auto_play=False)),
        ("model.safetensors", "application/octet-stream", "the trained weights, with the config inside",
         lambda: weights_bytes(model())),
        ("config.json", "application/json", "the config (open it again with Import)",
         lambda: (cfg.to_json() + "\n").encode()),
        ("data.csv", "text/csv", "the points: x1, x2, label, split", lambda: export.data_csv(run.data)),
        ("trajectories.npz", "application/octet-stream", "t, x (L+1, n, d), y",
         lambda: export.trajectories_npz(model(), run.data)),
        ("metrics.json", "application/json", "config, final metrics and the training history",
         lambda: export.metrics_json(cfg, metrics, run.history)),
    ]
    cols = st.columns(3)
    for i, (name, mime, what, make) in enumerate(files):
        cols[i % 3].download_button(name, data=make, file_name=name, mime=mime, help=what, on_click="ignore",
                                    key=f"dl_{name}", width="stretch")


def import_upload(ss, name: str, raw: bytes, registry, data_for) -> str | None:
    """Open an uploaded run (.safetensors) or config (.json); returns an error message, or None.

    Never unpickles: safetensors and JSON only; the previous state stays when anything is wrong.
    """
    try:
        if name.endswith(".json"):
            if len(raw) > 100_000:
                raise FlowvizError("a config file is a few hundred bytes; this one is too large")
            text = raw.decode("utf-8", errors="strict")
            cfg = Config.from_json(text) if '"config"' not in text else Config.from_dict(json.loads(text)["config"])
            cfg.check_server_limits()  # the page is a server's: its limits hold for imports too
            ss.config, ss.scenario = cfg, None
            clear_widgets(ss)
            ss.autostart = True
            return None
        if not name.endswith(".safetensors"):
            raise FlowvizError("import a model.safetensors or a config.json written by flowviz")
        model = model_from_bytes(raw)
        data = data_for(model.config, ss)
        run = registry.adopt(model, data, key_suffix=_key(raw))
        ss.config, ss.scenario, ss.run_key, ss.run_config = model.config, None, run.key, model.config
        clear_widgets(ss)
        ss.autostart = False
        return None
    except (FlowvizError, UnicodeDecodeError, ValueError, KeyError, TypeError) as e:
        return f"{name}: {e}. Nothing was changed."
