"""The lecturer's hands on the page: Pause, Resume, Step and Step x 10; the training-step slider and the layer
frame (link flags ``step=``, ``k=``, ``speed=``); what Stop and Pause did in this window, or why not.

A run trains in a worker; Pause cancels it keeping its state (weights, optimiser, mini-batch generator) and
Resume or Step has a worker go on from there (``flowviz.serve.runs.run.Run.pause`` / ``go``), so a paused run ends
with the weights of one that never paused. A run shared by several windows is stopped or paused only from the
window that started it, or where no other window watches it; elsewhere the window is told so and offered its
own copy. The page's state changes only through ``PageState``'s methods.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from .. import plots
from ..training.analysis import frame_steps
from . import links
from .notices import notice

__all__ = [
    "ACTIONS",
    "run_buttons",
    "act",
    "notices",
    "shown",
    "step_row",
    "adjust",
    "sync_widgets",
    "MIN_TEST_PER_CLASS",
    "test_fraction",
]

ACTIONS = ("stop", "pause", "resume", "step", "step10")
STEPS = {"step": 1, "step10": 10}  # optimiser steps of each Step button
SPEEDS = (50, 100, 250, 500, 1000, 2000)  # the layer animation's frame durations offered (ms)
DEFAULT_SPEED = 250  # flowviz.plots' own frame duration
MIN_TEST_PER_CLASS = 20  # fewer points in a class: no test split (an accuracy from three points says nothing)
SHARED = (
    "This run is shared with another window that started it, and that window still shows it: {what} "
    "there, or train your own copy here."
)


def test_fraction(y: np.ndarray, fraction: float) -> float:
    """The test fraction for points with labels ``y``: ``fraction``, or 0 when a class has fewer than
    MIN_TEST_PER_CLASS points."""
    counts = np.bincount(np.asarray(y, dtype=np.int64))
    return fraction if counts[counts > 0].min() >= MIN_TEST_PER_CLASS else 0.0


def _runs(state, registry) -> list:
    return [r for r in (registry.get(k) if k else None for k in (state.run_key, state.compare_key)) if r is not None]


def run_buttons(state, registry, cols) -> str | None:
    """Pause (Resume when paused), Step and Step x 10 in three columns; the action pressed, or None."""
    runs = _runs(state, registry)
    run = runs[0] if runs else None
    paused = run is not None and run.paused
    going = run is not None and not run.finished
    pause = cols[0].button(
        "Resume" if paused else "Pause",
        width="stretch",
        key="pause",
        disabled=not (paused or going),
        help="Resume: go on from where it paused"
        if paused
        else "pause training, keeping the run and its optimiser state",
    )
    one = cols[1].button(
        "Step",
        width="stretch",
        key="step1",
        disabled=not paused,
        help="one optimiser step of the paused run, then pause again",
    )
    ten = cols[2].button(
        "Step × 10",
        width="stretch",
        key="step10",
        disabled=not paused,
        help="ten optimiser steps of the paused run, then pause again",
    )
    if pause:
        return "resume" if paused else "pause"
    return "step" if one else "step10" if ten else None


def _may_halt(run, session: str) -> bool:
    """Stop or Pause from ``session``: it started the run, or no other window watches it."""
    return session in run.owners or not (run.watchers() - {session})


def act(state, action: str, registry, session: str) -> None:
    """Do ``action`` (one of ACTIONS) to the runs this window shows, and say in this window what was done."""
    runs = _runs(state, registry)
    if not runs:
        state.tell("Nothing to do: no run is shown. Press **Train** first.")
        return
    run = runs[0]
    step = run.latest.step if run.latest is not None else 0
    if action in ("stop", "pause") and not run.finished and not _may_halt(run, session):
        state.tell(SHARED.format(what="Stop" if action == "stop" else "Pause"), offer_copy=True)
        return
    if action == "stop":
        going = [r for r in runs if not r.finished or r.paused]
        for r in going:
            r.stop()
        state.tell(
            f"Stopped at step {step} of {run.config.train_steps}; the last state stays on screen. Train "
            "starts again from step 0."
            if going
            else f"Nothing to stop: this run has already {run.status} (step {step})."
        )
    elif action == "pause":
        paused = [r.pause() for r in runs]
        state.tell(
            f"Pausing at step {step}: **Step** makes one optimiser step, **Resume** goes on."
            if paused[0]
            else f"Nothing to pause: this run has {run.status} (step {step})."
        )
    elif action == "resume":
        went = [r.go() for r in runs]
        state.tell(None if went[0] else f"Nothing to resume: this run has {run.status}.")
    else:
        n = STEPS[action]
        went = [r.go(n) for r in runs]
        state.tell(
            f"{n} optimiser step{'s' if n > 1 else ''} from step {step}…"
            if went[0]
            else "Step works on a paused run: press **Pause** first."
        )
    state.set_step(None)  # the views follow the run's latest state again


def notices(state, registry, session: str) -> None:
    """What the last control pressed here did; with a shared run, the offer of this window's own copy."""
    if state.hand_notice:
        notice(state.hand_notice, "warning" if state.offer_copy else "info")
    if state.offer_copy and st.button(
        "Train my own copy", key="own_copy", help="the same settings, trained for this window alone"
    ):
        runs = _runs(state, registry)
        if runs:
            copy = registry.own_copy(runs[0], session)
            state.run_key, state.compare_key, state.run_config = copy.key, None, copy.config
            registry.claim(session, {copy.key})
            state.tell("Your own copy of the run trains here; Stop and Pause act on it alone.")
            st.rerun()


# -------------------------------------------------------------------- the training step and the layer frame
def shown(state, run):
    """(the run as shown: at the link's training step if one is set and kept, else the run itself; its views)."""
    step = state.flags["step"]
    at = run.at(step) if step is not None and run.latest is not None else None
    return (at, at.views()) if at is not None else (run, run.views())


def _set_flag(name: str, value) -> None:
    """One link flag in the browser's address bar (a fragment's rerun does not rewrite the whole link)."""
    text = links.FLAGS[name].write(value)
    if text is None:
        st.query_params.pop(name, None)
    else:
        st.query_params[name] = text


def step_row(state, run) -> None:
    """The training-step slider (every kept step of the run, and its latest), the layer frame buttons and the
    animation speed, in one row above the views."""
    if run.latest is None:
        return
    latest = run.latest.step
    options = sorted({s for s in run.checkpoints if s <= latest} | {latest})
    want = state.flags["step"]
    value = latest if want is None else (run.kept_step(want) if run.kept_step(want) is not None else latest)
    c1, c2, c3, c4, c5 = st.columns([5.6, 0.6, 1.8, 0.6, 1.6], vertical_alignment="bottom")
    if len(options) > 1:
        # one widget per set of options: a slider whose options changed under it read the browser's old position
        # against the new options and reported step 0 (while training, and when the last checkpoint was added)
        ss, key = st.session_state, f"train_step~{latest}~{len(options)}"
        if ss.get(key) != value:
            ss[key] = value

        def moved():
            s = ss.get(key)  # a slider of an older set of options whose key the page has since dropped: None
            if s is None:
                return
            state.set_step(None if s == latest else s)
            _set_flag("step", state.flags["step"])

        c1.select_slider(
            "Training step (kept checkpoints)",
            options=options,
            value=value,  # (and its default: a slider mounted anew reported its default, step 0, as a move)
            key=key,
            on_change=state.callback(moved),
            label_visibility="collapsed" if state.present else "visible",  # (the projector's height)
            help="the run as it was at this optimiser step: every view, instrument and the probe "
            "follow; the link keeps it (step=)",
        )
    ks = [int(k) for k in frame_steps(run.config.n_steps)]
    k = state.flags["k"] if state.flags["k"] is not None else 0
    k = max([x for x in ks if x <= k], default=0)

    def frame(delta: int):
        i = ks.index(k) + delta
        state.set_frame(ks[min(len(ks) - 1, max(0, i))])
        _set_flag("k", state.flags["k"])

    c2.button(
        "◀",
        key="frame_back",
        on_click=state.callback(frame),
        args=(-1,),
        disabled=k == ks[0],
        help="one layer frame back",
    )
    c3.markdown(f"step **{value}** · layer k = **{k}**" if state.present else f"layer k = **{k}**")
    c4.button(
        "▶",
        key="frame_next",
        on_click=state.callback(frame),
        args=(1,),
        disabled=k == ks[-1],
        help="one layer frame forward",
    )

    def speed():
        state.set_speed(st.session_state.get("frame_ms"))
        _set_flag("speed", state.flags["speed"])

    cur = state.flags["speed"] or DEFAULT_SPEED
    c5.select_slider(
        "Frame duration (ms)",
        options=sorted(set(SPEEDS) | {cur}),
        value=cur,
        key="frame_ms",
        on_change=state.callback(speed),
        help="the layer animation's speed; the link keeps it (speed=)",
        format_func=lambda ms: f"{ms} ms",
        label_visibility="collapsed" if state.present else "visible",
    )


def adjust(fig, state, *, mark_step: int | None = None):
    """The figure as this page shows it: opened at the layer frame ``k=``, its animation at ``speed=``, and the
    training step ``mark_step`` marked (learning curves). The built figure is shared: a changed copy (a dict)
    is returned, or the figure itself when nothing changes."""
    k, speed = state.flags["k"], state.flags["speed"]
    frames = getattr(fig, "frames", None) or ()
    if (k is None or not frames) and (speed is None or not frames) and mark_step is None:
        return fig
    d = fig.to_dict()
    if k is not None and d.get("frames"):
        _open_at(d, k)
    if speed is not None:
        for menu in d["layout"].get("updatemenus", []):
            for b in menu.get("buttons", []):
                args = b.get("args") or []
                if b.get("method") == "animate" and len(args) > 1 and args[0] is None:  # the play button
                    args[1].setdefault("frame", {})["duration"] = int(speed)
    if mark_step is not None:
        axes = sorted(a for a in d["layout"] if a.startswith("xaxis"))
        shapes = list(d["layout"].get("shapes", []))
        for a in axes:
            n = a[5:]
            shapes.append(
                dict(
                    type="line",
                    xref=f"x{n}",
                    yref=f"y{n} domain",
                    x0=mark_step,
                    x1=mark_step,
                    y0=0,
                    y1=1,
                    line=dict(color="black", width=2, dash="dash"),
                )
            )
        d["layout"]["shapes"] = shapes
        d["layout"].setdefault("annotations", []).append(
            dict(
                x=mark_step,
                xref="x",
                y=1.0,
                yref="y domain",
                text=f"step {mark_step}",
                showarrow=False,
                xanchor="left",
                yanchor="top",
                font=dict(size=14),
            )
        )
    return d


def _open_at(d: dict, k: int) -> None:
    """Show frame ``k`` (its last frame named <= k) in the figure dict ``d``: its data, its layout, its slider."""
    names = []
    for f in d["frames"]:
        try:
            names.append(int(f.get("name")))
        except (TypeError, ValueError):
            return  # frames not named by layer
    i = max([j for j, n in enumerate(names) if n <= k], default=0)
    f = d["frames"][i]
    for j, t in enumerate(f.get("traces") or range(len(f.get("data", [])))):
        if t < len(d["data"]) and j < len(f["data"]):
            d["data"][t].update({key: v for key, v in f["data"][j].items() if key != "type"})
    title = (f.get("layout") or {}).get("title")
    if title:
        d["layout"]["title"] = {**d["layout"].get("title", {}), **title}
    for s in d["layout"].get("sliders", []):
        s["active"] = i


def sync_widgets(state) -> None:
    """After the config changed under the sidebar: forget the old generation's widgets (the new ones, see
    PageState.widget_gen, show the config), and set the scenario list and the presentation switch to the page's
    state (set, not deleted: a deleted key came back with the browser's old value)."""
    from .state import NO_SCENARIO

    ss = st.session_state
    for k in [k for k in ss.keys() if str(k).startswith("w_") and k not in ("w_scenario_pick", "w_present")]:
        del ss[k]
    ss["w_scenario_pick"] = state.scenario or NO_SCENARIO
    ss["w_present"] = state.present


def keep_choices(keys=("instrument",)) -> None:
    """Keep the choices of widgets the page may skip for a rerun (the Instruments sub-view is not drawn while a
    new run has no picture yet): Streamlit forgets an undrawn widget's value, and the view jumped back."""
    ss = st.session_state
    for k in keys:
        if k in ss:
            ss[k] = ss[k]


def learning_mark(fn, state, run) -> int | None:
    """The training step the learning curves mark (the shown step), or None."""
    if fn is not plots.learning_curves or state.flags["step"] is None:
        return None
    return run.kept_step(state.flags["step"])
