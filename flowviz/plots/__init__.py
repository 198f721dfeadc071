"""Plotly figures built from :class:`flowviz.training.analysis.FlowViews`. No streamlit here, no training.

Each function takes the views (or a TrainResult, which is analysed first) and
returns a ``plotly.graph_objects.Figure``, so they work in Jupyter as they are::

    r = flowviz.train(flowviz.preset("moons"))
    flowviz.plots.characteristics(r).show()
"""

from .convergence import convergence
from .figures import (
    FIGURES,
    characteristics,
    decision,
    diagnostics,
    learning_curves,
    presentation,
    samples,
    spacetime,
    transport,
    velocity,
    weights,
)

__all__ = ["FIGURES", "characteristics", "decision", "transport", "spacetime", "velocity", "learning_curves",
           "diagnostics", "weights", "presentation", "samples", "convergence"]
