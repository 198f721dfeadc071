"""Figures are built once per views object and shared by every page that shows it (flowviz.ui.figcache)."""

import pytest
from tiny import TINY

import flowviz
from flowviz import plots
from flowviz.training.analysis import analyse
from flowviz.ui import figcache


@pytest.fixture(scope="module")
def views():
    r = flowviz.train(TINY)
    return analyse(r.model, r.data, history=r.history)


def test_the_same_views_get_the_same_figure_object_and_new_views_a_new_one(views):
    figcache.clear()
    calls = []

    def counted(v):
        calls.append(v)
        return plots.decision(v)

    a = figcache.figure(counted, views, False)
    b = figcache.figure(counted, views, False)
    assert a is b and len(calls) == 1  # the second page got the figure built for the first
    presented = figcache.figure(counted, views, True)
    assert presented is not a and len(calls) == 2  # presentation mode is its own figure
    other = analyse(flowviz.train(TINY.replace(seed=7)).model, views.data)
    c = figcache.figure(counted, other, False)
    assert c is not a and len(calls) == 3


def test_a_cached_figure_is_the_figure_built_directly(views):
    figcache.clear()
    cached = figcache.figure(plots.characteristics, views, False)
    assert cached.to_json() == plots.characteristics(views).to_json()  # every trace and frame, as sent
    assert (
        figcache.figure(plots.characteristics, views, True).to_json()
        == plots.presentation(plots.characteristics(views)).to_json()
    )


def test_an_old_id_never_returns_a_figure_of_freed_views(views, monkeypatch):
    """Python reuses the id of a freed object: the cache compares the views object itself."""
    figcache.clear()
    fig = figcache.figure(plots.decision, views, False)
    impostor = analyse(flowviz.train(TINY.replace(seed=8)).model, views.data)
    (key,) = figcache._CACHE.keys()
    figcache._CACHE.put((id(impostor),) + key[1:], figcache._CACHE.pop(key))  # as if views' id were reused
    assert figcache.figure(plots.decision, impostor, False) is not fig


def test_the_cache_keeps_at_most_keep_figures(views, monkeypatch):
    figcache.clear()
    monkeypatch.setattr(figcache._CACHE, "size", 2)
    for fn in (plots.decision, plots.velocity, plots.transport):
        figcache.figure(fn, views, False)
    assert len(figcache._CACHE) == 2
