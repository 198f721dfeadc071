"""Training and what is measured of a trained flow: the training loop, lane-batched sweeps, CUDA-graph
replays, depth sweeps and the analysis the figures draw. Builds on flowviz.core only.
"""
