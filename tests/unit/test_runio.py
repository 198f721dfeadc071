import pickle

import numpy as np
import pytest
import torch

from flowviz import CheckpointError, Config, train
from flowviz.runfiles.files import model_from_bytes, weights_bytes


@pytest.fixture(scope="module")
def result():
    return train(Config(n_samples=200, n_steps=5, train_steps=20, time_mode="continuous", knots=3, lift=1))


def test_export_import_gives_identical_predictions(result):
    m = model_from_bytes(weights_bytes(result.model))
    x = result.data.x
    np.testing.assert_array_equal(m.predict_proba(x), result.model.predict_proba(x))
    assert m.config == result.config


def test_a_pickle_is_refused(result):
    raw = pickle.dumps(result.model.state_dict())
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        model_from_bytes(raw)
    buf = __import__("io").BytesIO()
    torch.save(result.model.state_dict(), buf)  # a torch zip archive
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        model_from_bytes(buf.getvalue())


@pytest.mark.slow
def test_truncated_foreign_and_mismatched_files_are_refused(result):
    raw = weights_bytes(result.model)
    with pytest.raises(CheckpointError, match="truncated"):
        model_from_bytes(raw[: len(raw) // 2])
    from safetensors.torch import save

    with pytest.raises(CheckpointError, match="not written by flowviz"):
        model_from_bytes(save({"w": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match="field='two_layer' but 'mlp'"):
        model_from_bytes(raw, expect_config=result.config.replace(field="mlp"))
    sd = {k: v.contiguous() for k, v in result.model.state_dict().items()}
    sd["field.W1"] = torch.zeros(2, 2, 2)
    meta = {"format": "flowviz-run-1", "config": result.config.to_json(), "n_classes": "2"}
    with pytest.raises(CheckpointError, match="shape"):
        model_from_bytes(save(sd, metadata=meta))
    bad = dict(meta, config='{"n_steps": 9999}')
    with pytest.raises(CheckpointError, match="config is not valid|has shape"):  # past LIMITS: caught at the shapes
        model_from_bytes(save({k: v.contiguous() for k, v in result.model.state_dict().items()}, metadata=bad))
