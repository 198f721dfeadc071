"""The page's take-away of a whole lesson: "Download the lecture pack" (a zip of self-contained HTML pages, see
flowviz.plots.pack) and a video button under each animated view (flowviz.plots.video). Each file is made
only when its button is pressed (Streamlit runs the maker in a thread; a failure is logged and the button
says "Failed to generate file for download", never a traceback).
"""

from __future__ import annotations

import streamlit as st

from .. import plots
from ..core.errors import FlowvizError
from ..core.presets import preset_info
from ..plots import pack, video
from ..training.packdata import pack_data
from ..training.prepared import PREPARED

VIDEO_FORMAT = ".mp4"
VIDEO_SIZE = "1280x720"
VIDEO_FPS = 4.0


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


def video_buttons(run, views, figures, state) -> None:
    """A video button under each animated figure of the view (``figures``: its builders); without the extras,
    one line saying what to install."""
    animated = [fn for fn in figures if video.VIEWS.get(fn.__name__, ("",))[0] == "views"]
    if not animated or views is None or views.live or run.latest is None:
        return
    why = video.missing()
    if why:
        st.caption(why)
        return
    base, size = _link_base(), video.SIZES[VIDEO_SIZE]
    for fn in animated:

        def make(fn=fn):
            return video.video_bytes(
                plots.presentation(fn(views)), VIDEO_FORMAT, size, VIDEO_FPS, meta=_meta(run, state.scenario, base)
            )

        st.download_button(
            f"Video of this animation ({VIDEO_FORMAT[1:]}, {VIDEO_SIZE})",
            data=make,
            file_name=f"flowviz-{fn.__name__}{VIDEO_FORMAT}",
            mime=video.FORMATS[VIDEO_FORMAT],
            help="each frame rendered by plotly's exporter (kaleido), for slides",
            on_click="ignore",
            key=f"dl_video_{fn.__name__}",
        )
