"""The depth and step-size explorer: sweep one key of the current config, compare the members.

The sweep and coarse-to-fine training run as registry jobs (shared by sessions with the same request; a
batched sweep spreads its lanes over the free training processes). Everything heavy happens in the workers:
training, the members' measurements, coarse to fine and the side-by-side pictures (``Executor.measure``); the
job threads only wait for them, and this tab only reads their progress and results.
"""

from __future__ import annotations

import hashlib
import logging

import streamlit as st

from ...core.config import Config
from ...core.data import Dataset
from ...core.errors import FlowvizError
from ...plots import presentation
from ...plots import sweep as sweep_plots
from ...serve.runs.registry import Job, Registry, data_key
from ...training.sweep import VARY_KEYS, parse_vary, run_sweep
from ..notices import notice
from ..plaintext import literal
from ..session import session_id

log = logging.getLogger("flowviz.ui")

DEFAULT_VALUES = {
    "n_steps": "1,2,4,8,16,32,64",
    "horizon": "0.25,0.5,1,2,4",
    "scheme": "euler,midpoint,rk4",
    "time_mode": "per_step,tied,continuous",
    "smoothness": "0,0.01,0.1,1",
}
KEY_LABELS = {
    "n_steps": "steps L (at fixed T)",
    "horizon": "horizon T (at fixed L)",
    "scheme": "scheme",
    "time_mode": "time dependence",
    "smoothness": "smoothness penalty λ",
}
INTRO = (
    "**How do depth and step size change the result?** Deep means a fine partition and small steps, each "
    "block making a little progress along a smooth flow (Li & Shi, section 4). Pick what to vary; every "
    "member trains on the same data with the same seed. Members that differ only in their discretisation "
    "train together as one batched computation."
)


def job_key(kind: str, cfg: Config, data: Dataset, *parts) -> str:
    """The registry key of a sweep or coarse-to-fine job: the request and the data's own hash (two sessions
    with different uploaded points never share a result, whatever their length)."""
    return hashlib.sha256("|".join(map(str, (kind, cfg.key(), *parts, data_key(data)))).encode()).hexdigest()[:16]


def running(reg: Registry, state) -> bool:
    """True while a job this session watches is still going (the page then keeps refreshing); asking keeps the
    jobs watched (the registry cancels a job nobody asks about)."""
    sweep = reg.get_job(state.sweep_job) if state.sweep_job else None
    keys = [state.c2f_job, *(sweep.cache.get("view_jobs", ()) if sweep is not None else ())]
    return any(j is not None and not j.finished for j in [sweep, *(reg.get_job(k) for k in keys if k)])


def panel(reg: Registry, state, cfg: Config, data: Dataset) -> None:
    """The sweep tab (``state``: the page's PageState): controls, progress, and the finished sweep's figures."""
    st.markdown(INTRO)
    c = st.columns([2, 3, 1, 1])
    key = c[0].selectbox(
        "Vary",
        VARY_KEYS,
        key="sweep_key",
        format_func=KEY_LABELS.get,
        help="the one key the members differ in; the rest comes from the sidebar",
    )
    text = c[1].text_input(
        "Values (comma-separated)",
        DEFAULT_VALUES[key],
        key=f"sweep_values_{key}",
        help="at most 12 values, each within the key's limits",
    )
    c[2].markdown("<div style='height: 1.8em'></div>", unsafe_allow_html=True)
    c[3].markdown("<div style='height: 1.8em'></div>", unsafe_allow_html=True)
    go = c[2].button("Run sweep", type="primary", width="stretch", key="sweep_go")
    stop = c[3].button("Stop", width="stretch", key="sweep_stop")
    if go:
        try:
            k, values = parse_vary(f"{key}={text}", cfg)
            for v in values:  # the page is a server's: its limits are hard (the CLI's sweeps may go beyond)
                cfg.replace(**{k: v}).check_server_limits()
        except FlowvizError as e:
            notice(f"{e}. Nothing was started; the last sweep stays on screen.", "error")
        else:
            jk = job_key("sweep", cfg, data, k, values)
            # a sweep trains and is measured on the executor's workers (a batch spread over them, or one member
            # per worker): the job's thread only waits for them, so it holds no worker of its own
            try:
                reg.check_budget([cfg.replace(**{k: v}) for v in values], data, what="This sweep")
            except FlowvizError as e:
                st.error(str(e))
                return
            reg.job(
                jk,
                lambda progress, cancel: run_sweep(
                    cfg, k, values, data=data, progress=progress, cancel=cancel, pool=reg.executor
                ),
                holds_worker=False,
            )
            reg.claim(session_id(), {jk})  # a sweep replaces the session's run (one training job each)
            state.watch_sweep(jk)
            st.rerun()  # the page refreshes while the sweep runs
    job = reg.get_job(state.sweep_job) if state.sweep_job else None
    if stop and job is not None:
        job.stop()
    if job is None:
        st.info("Choose what to vary and press **Run sweep**.")
        return
    _status(job)
    if job.result is None or job.status == "cancelled":  # a stopped sweep was not measured: nothing to draw
        return
    s = job.result
    if s.notes:
        st.caption(literal(" · ".join(s.notes)))
    for fn in sweep_plots.SWEEP_FIGURES.values():
        if fn in (sweep_plots.sweep_transfer, sweep_plots.sweep_convergence) and s.key != "n_steps":
            continue  # both belong to the Depth sweep (a sweep over L)
        _chart(job, fn, s, present=state.present)
    _side_by_side(reg, state, job, s)
    _coarse_to_fine(reg, state, cfg, data)


def _status(job: Job) -> None:
    if job.status == "error":
        notice(f"The sweep failed: {job.error}", "error")
    elif not job.finished:
        st.progress(min(1.0, job.fraction), text=literal(job.text))
    elif job.status == "cancelled":
        st.warning("The sweep was stopped.")
    else:
        st.success(
            f"Sweep finished in {job.result.wall_s:.1f} s"
            + (" (one batched computation)." if job.result.batched else ".")
        )


def _chart(job: Job, fn, *args, present: bool = False) -> None:
    name = fn.__name__
    try:
        key = name + (" present" if present else "")  # presentation mode's frame: its own copy
        fig = job.cache.get(key)
        if fig is None:
            fig = job.cache[key] = presentation(fn(*args)) if present else fn(*args)
        st.plotly_chart(fig, width="stretch", theme=None, key=f"sweep_{name}")
    except Exception:  # a figure must never take the page down
        log.exception("sweep figure %s failed", name)
        st.error(f"The {name} view could not be drawn for this sweep.")


def _side_by_side(reg: Registry, state, job: Job, s) -> None:
    st.markdown("**Side by side** — one shared slider over t in [0, T], so both panels show the same time.")
    labels = [f"{s.key} = {m.value}" for m in s.members]
    c = st.columns(2)
    a = c[0].selectbox("Left", range(len(labels)), index=0, format_func=labels.__getitem__, key="sbs_a")
    b = c[1].selectbox("Right", range(len(labels)), index=len(labels) - 1, format_func=labels.__getitem__, key="sbs_b")
    if not _member_views(reg, state, job, s, (a, b)):
        return
    views = job.cache["views"]
    ck = f"sbs_{a}_{b}" + (" present" if state.present else "")
    if ck not in job.cache:
        fig = sweep_plots.side_by_side(views[a], views[b], (labels[a], labels[b]))
        job.cache[ck] = presentation(fig) if state.present else fig
    st.plotly_chart(job.cache[ck], width="stretch", theme=None, key="sweep_side_by_side")


def _member_views(reg: Registry, state, job: Job, s, picked) -> bool:
    """True once the views of the ``picked`` members are in ``job.cache["views"]``; until then each is made by a
    worker in a job of its own (the page keeps refreshing meanwhile) and this says so."""
    views, pending = job.cache.setdefault("views", {}), job.cache.setdefault("view_jobs", set())
    for i in picked:
        if i in views:
            continue
        vk = f"{job.key}-views-{i}"
        model = s.members[i].model
        vj = reg.get_job(vk)
        if vj is None or vj.status == "cancelled":  # (one that failed stays failed: no retry on every refresh)
            vj = reg.job(
                vk,
                lambda progress, cancel, m=model: reg.executor.measure("views", s.data, models=[m], cancel=cancel),
                holds_worker=False,
            )
        pending.add(vk)
        if vj.finished and vj.result is not None:
            views[i] = vj.result
            pending.discard(vk)
        elif vj.status == "error":
            notice(f"The pictures of member {i + 1} could not be made: {vj.error}", "error")
            pending.discard(vk)
    if all(i in views for i in picked):
        return True
    if pending:
        state.watch_sweep(job.key)  # refresh until they come
        st.caption("The two members' pictures are being made by a worker…")
    return False


def _coarse_to_fine(reg: Registry, state, cfg: Config, data: Dataset) -> None:
    with st.expander("Coarse to fine: train at L, double the partition, go on", expanded=bool(state.c2f_job)):
        st.caption(
            "Haber and Ruthotto's multilevel idea: per-step weights are carried to the finer partition "
            "piecewise constant in t (the same field, smaller steps; a geometric partition with ratio r is "
            "split in the ratio √r, so that every old tₖ stays a point of the new one); tied and continuous "
            "weights are re-discretised as they are. Compared with training at the finest L from scratch "
            "for the same number of optimiser steps."
        )
        c = st.columns([1, 1, 1])
        lo = c[0].number_input("from L", 1, 128, 4, key="c2f_lo")
        hi = c[1].number_input("to L", 1, 256, 32, key="c2f_hi")
        c[2].markdown("<div style='height: 1.8em'></div>", unsafe_allow_html=True)
        if c[2].button("Train coarse to fine", key="c2f_go", width="stretch"):
            if hi < lo:
                st.error("'to L' must be at least 'from L'.")
            else:
                jk = job_key("c2f", cfg, data, lo, hi)
                reg.claim(session_id(), {jk})
                reg.job(
                    jk,
                    lambda progress, cancel: reg.executor.measure(  # trained by a worker, a long task
                        "coarse_to_fine", data, config=cfg, L_start=int(lo), L_end=int(hi), cancel=cancel, long=True
                    ),
                    holds_worker=False,
                )
                state.watch_c2f(jk)
                st.rerun()
        job = reg.get_job(state.c2f_job) if state.c2f_job else None
        if job is None:
            return
        if job.status == "error":
            notice(job.error, "error")
        elif not job.finished:
            st.progress(0.5, text="training coarse to fine…")
        elif job.result is not None:
            _chart(job, sweep_plots.coarse_to_fine_curve, job.result, present=state.present)
