"""What a user can take away from a run, as bytes: data and trajectories, metrics, history, weights, config.

Used by the page's download buttons and by ``files.save_run``; no streamlit here.
"""

from __future__ import annotations

import csv
import io
import json
import math

import numpy as np

from ..core.config import Config
from ..core.data import Dataset
from ..core.model import FlowModel

__all__ = ["data_csv", "trajectories_npz", "history_csv", "metrics_json", "HISTORY_COLUMNS"]

HISTORY_COLUMNS = ["step", "loss", "train_accuracy", "test_accuracy", "test_loss", "elapsed"]


def data_csv(ds: Dataset) -> bytes:
    """The points with their labels and split: columns x1, x2, label, split (loads back with load_csv)."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["x1", "x2", "label", "split"])
    for x, y, name in ((ds.x_train, ds.y_train, "train"), (ds.x_test, ds.y_test, "test")):
        for (a, b), c in zip(x, y):
            w.writerow([f"{a:.7g}", f"{b:.7g}", int(c), name])
    return buf.getvalue().encode()


def trajectories_npz(model: FlowModel, ds: Dataset) -> bytes:
    """t (L+1,), x (L+1, n, d) the characteristics of every point, y (n,), n_train; float32 / int64."""
    buf = io.BytesIO()
    xs = model.trajectory(ds.x)
    np.savez_compressed(
        buf, t=model.times.astype(np.float32), x=xs.astype(np.float32), y=ds.y.astype(np.int64), n_train=len(ds.x_train)
    )
    return buf.getvalue()


def history_csv(history: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=HISTORY_COLUMNS, extrasaction="ignore")
    w.writeheader()
    w.writerows(history)
    return buf.getvalue().encode()


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v


def metrics_json(config: Config, metrics: dict, history: list[dict] | None = None) -> bytes:
    """The config, the final metrics and (optionally) the history, as one JSON document."""
    doc = {"config": config.to_dict(), "metrics": {k: _clean(v) for k, v in metrics.items()}}
    if history is not None:
        doc["history"] = [{k: _clean(v) for k, v in r.items()} for r in history]
    return (json.dumps(doc, indent=2) + "\n").encode()
