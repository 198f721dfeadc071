"""The registry and its runs: runs and jobs keyed by config and shared by sessions (``registry``), one run
trained on a worker with its views and instruments (``run``), a longer computation of the page (``jobs``), and
their states (``status``)."""
