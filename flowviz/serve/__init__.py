"""Serving runs to many pages, in two wings: the registry and its runs (``runs``), and where the work is done
(``work``: the executors and the worker tasks); beside them the budget, fairness across clients, settings and
rooms. Builds on flowviz.runfiles, flowviz.training and flowviz.core; knows nothing of streamlit or plotly.
"""
