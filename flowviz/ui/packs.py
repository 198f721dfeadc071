"""The page's take-away of a whole lesson: "Download the lecture pack" (a zip of self-contained HTML pages, see
flowviz.plots.pack) and a video button under each animated view (flowviz.plots.video). Each file is made
only when its button is pressed (Streamlit runs the maker in a thread; a failure is logged and the button
says "Failed to generate file for download", never a traceback).
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import streamlit as st

from .. import plots
from ..core.errors import FlowvizError
from ..core.presets import preset_info
from ..plots import pack, video
from ..training.packdata import pack_data
from ..training.prepared import PREPARED

VIDEO_FORMAT = ".mp4"
VIDEO_SIZE = "1280x720"
VIDEO_FPS = 4
VIDEO_RATES = (1, 2, 3, 4, 6, 8, 12, 24, 30)


def _link_base() -> str:
    try:
        return st.context.url or pack.DEFAULT_LINK_BASE
    except Exception:  # outside a page's script run
        return pack.DEFAULT_LINK_BASE


def _meta(run, scenario, base):
    return pack.run_meta(run.config, scenario, run.latest.metrics(), base)


def pack_bytes(run, views, scenario: str | None, probe=None, base: str = pack.DEFAULT_LINK_BASE) -> bytes:
    """The lecture pack of a finished run as a zip: its page and index.html. The instruments a worker made are
    used; the others are computed here only when no worker is on them (as the Instruments view does)."""
    made = {}
    for name in PREPARED:
        try:
            made[name] = run.instrument(name)
        except FlowvizError:
            pass
    info = preset_info(scenario) if scenario else None
    pd = pack_data(
        run.model(),
        run.data,
        history=run.history,
        views=views,
        instruments=made,
        compute_missing=not run.preparing(),
        probe_at=probe or (info or {}).get("probe"),
    )
    name = scenario or f"run-{run.config.key()[:10]}"
    page = dict(
        name=name,
        data=pd,
        title=info["title"] if info else "Your run",
        description=info["description"] if info else "",
        meta=_meta(run, scenario, base),
    )
    return pack.pack_zip(pack.pack_files([page]))


def pack_button(run, views, state, container=None) -> None:
    """ "Download the lecture pack": a zip of this run's self-contained page and its index."""
    base = _link_base()
    (container or st).download_button(
        "Download the lecture pack",
        data=lambda: pack_bytes(run, views, state.scenario, state.probe, base),
        file_name=f"flowviz-pack-{state.scenario or run.config.key()[:10]}.zip",
        mime="application/zip",
        help="every view, the instruments and the scenario's text as HTML pages that open from disk, offline",
        on_click="ignore",
        key="dl_lecture_pack",
        width="stretch",
    )


_COUNTS: OrderedDict = OrderedDict()  # (id(views), view, options) -> (views, frames): the last few, newest last
_COUNTS_LOCK = threading.Lock()


def _frames(fn, views, opts: dict) -> int:
    """The frames of ``fn(views, **opts)``, counted once per views object (the figure is built for that)."""
    key = (id(views), fn.__name__, tuple(sorted(opts.items())))
    with _COUNTS_LOCK:
        hit = _COUNTS.get(key)
        if hit is not None and hit[0] is views:
            return hit[1]
    n = video.frame_count(fn(views, **opts))
    with _COUNTS_LOCK:
        _COUNTS[key] = (views, n)
        while len(_COUNTS) > 16:
            _COUNTS.popitem(last=False)
    return n


def _video_options(fn) -> dict:
    """The options the page drew ``fn``'s figure with that a video keeps (the characteristics' one window)."""
    return {"fixed_window": True} if fn.__name__ == "characteristics" and st.session_state.get("fixed_window") else {}


def video_buttons(run, views, figures, state) -> None:
    """Under the animated figures of the view (``figures``: their builders): the video's size and frame rate,
    then a button per figure with what the file will be (frames, length, size, time to make it) said before it
    is made. Without the extras, one line saying what to install."""
    animated = [fn for fn in figures if video.VIEWS.get(fn.__name__, ("",))[0] == "views"]
    if not animated or views is None or views.live or run.latest is None:
        return
    why = video.missing()
    if why:
        st.caption(why)
        return
    left, right = st.columns(2)
    size_name = left.selectbox(
        "Video size", list(video.SIZES), index=list(video.SIZES).index(VIDEO_SIZE), key="video_size"
    )
    fps = right.select_slider("Video frame rate (fps)", options=VIDEO_RATES, value=VIDEO_FPS, key="video_fps")
    base, size = _link_base(), video.SIZES[size_name]
    for fn in animated:
        opts = _video_options(fn)
        n = _frames(fn, views, opts)
        est = video.estimate(n, size, fps, VIDEO_FORMAT)

        def make(fn=fn, opts=opts, size=size, fps=fps):
            fig = plots.presentation(fn(views, **opts))
            return video.video_bytes(fig, VIDEO_FORMAT, size, fps, meta=_meta(run, state.scenario, base))

        st.download_button(
            f"Video of this animation ({VIDEO_FORMAT[1:]}, {size_name})",
            data=make,
            file_name=f"flowviz-{fn.__name__}-{size_name}-{fps:g}fps{VIDEO_FORMAT}",
            mime=video.FORMATS[VIDEO_FORMAT],
            help="each frame rendered by plotly's exporter (kaleido), for slides",
            on_click="ignore",
            key=f"dl_video_{fn.__name__}",
        )
        st.caption(est.line())
