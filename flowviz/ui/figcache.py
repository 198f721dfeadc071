"""Built figures shared by every page that shows the same views.

A figure is a pure function of a run's views (and presentation mode), and building one is the largest part of a
page's script run (most of it plotly's validation; figures in bench/README.md). A lecture hall
opens one link a hundred times and each open page refreshes its live view once a second, so the figure is
built once per views object and handed to every session. Figures are never changed after they are built here
(``st.plotly_chart`` only reads them).
"""

from __future__ import annotations

from ..core.lru import LRU
from .views import lecture

KEEP = 32  # figures kept (least recently used out): a few runs x a few views x two presentation modes
_CACHE: LRU = LRU(KEEP)
OBSERVERS: list = []  # called with each figure handed to a page (in that page's script thread): rooms follow it


def figure(fn, views, present: bool, **kw):
    """``lecture.style(fn(views, **kw), present)``, built once for this very ``views`` object.

    The key holds the views object itself (not only its id, which Python reuses once an object is freed), so a
    run's new views never meet an old figure.
    """
    return handed(_figure(fn, views, present, **kw))


def handed(fig):
    """``fig``, told to the OBSERVERS as handed to this page (a figure drawn without the cache, too)."""
    for observe in OBSERVERS:
        observe(fig)
    return fig


def _figure(fn, views, present: bool, **kw):
    key = (id(views), getattr(fn, "__qualname__", repr(fn)), bool(present), tuple(sorted(kw.items())))
    hit = _CACHE.get(key)
    if hit is not None and hit[0] is views:
        return hit[1]
    fig = lecture.style(fn(views, **kw), present)  # (two pages may build it once each at worst)
    _CACHE.put(key, (views, fig))
    return fig


def clear() -> None:
    """Forget every figure (tests)."""
    _CACHE.clear()
