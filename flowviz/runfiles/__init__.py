"""A run's files: saving and loading its weights and its directory (``files``), what a user takes away
(``export``), and the disk cache of finished runs (``cache``). Used by the server, the page and the command
line; builds on flowviz.training and flowviz.core only. Never a pickle.
"""
