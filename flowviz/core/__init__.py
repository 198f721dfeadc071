"""The mathematics and the data: config, data sets, time grids, velocity fields, solvers, the flow model.

torch and numpy only: no streamlit, no plotly, nothing of flowviz.training or flowviz.serve.
"""
