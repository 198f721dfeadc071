"""Serving runs to many pages: the run registry, the training processes, the disk cache, run files and
exports. Builds on flowviz.training and flowviz.core; knows nothing of streamlit or plotly.
"""
