"""Plotly figures built from :class:`flowviz.training.analysis.FlowViews`. No streamlit here, no training.

Each function takes the views (or a TrainResult, which is analysed first) and
returns a ``plotly.graph_objects.Figure``, so they work in Jupyter as they are::

    r = flowviz.train(flowviz.preset("moons"))
    flowviz.plots.characteristics(r).show()
"""

from .convergence import convergence
from .field import folding, velocity
from .figures import (
    characteristics,
    decision,
    diagnostics,
    learning_curves,
    presentation,
    samples,
    spacetime,
    transport,
    weights,
)
from .instruments import INSTRUMENTS, adjoint, probe, stability, transport_grid, volume
from .lifted import lifted

FIGURES = {  # every view by name (scenario files name them in side_figures)
    "characteristics": characteristics,
    "decision": decision,
    "transport": transport,
    "spacetime": spacetime,
    "velocity": velocity,
    "learning_curves": learning_curves,
    "diagnostics": diagnostics,
    "weights": weights,
    "lifted": lifted,
    "folding": folding,
}

# the views that mark the probe's path when given ``probe_path=`` (L+1, d): those of the plane and of the lifted
# space (the diagnostics are per block, not per point)
PROBE_VIEWS = frozenset({characteristics, decision, transport, spacetime, velocity, lifted})

__all__ = [
    "INSTRUMENTS",
    "PROBE_VIEWS",
    "probe",
    "stability",
    "volume",
    "transport_grid",
    "adjoint",
    "FIGURES",
    "characteristics",
    "decision",
    "transport",
    "spacetime",
    "velocity",
    "learning_curves",
    "diagnostics",
    "weights",
    "presentation",
    "samples",
    "lifted",
    "folding",
    "convergence",
]
