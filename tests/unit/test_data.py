import numpy as np
import pytest

from flowviz import Config, DataError, load_csv, make_dataset
from flowviz.core.data import RING_ANNULUS, RING_INNER


@pytest.mark.parametrize("name", ["moons", "circles", "rings", "spirals", "xor", "checkerboard", "blobs"])
def test_datasets_are_seeded_split_and_labelled(name):
    cfg = Config(dataset=name, n_samples=300, n_classes=4, test_fraction=0.25, seed=3)
    a, b = make_dataset(cfg), make_dataset(cfg)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    assert a.x_train.dtype == np.float32 and a.x_train.shape[1] == 2
    assert len(a.x_test) == 75 and len(a.x_train) == 225
    k = 4 if name in ("spirals", "blobs") else 2
    assert a.n_classes == k and set(np.unique(a.y)) == set(range(k))
    c = make_dataset(cfg.replace(seed=4))
    assert not np.array_equal(a.x_train, c.x_train)


def test_rings_are_a_disk_inside_an_annulus():
    ds = make_dataset(Config(dataset="rings", n_samples=2000, noise=0.0))
    r = np.linalg.norm(ds.x, axis=1)
    assert r[ds.y == 0].max() <= RING_INNER + 1e-6
    assert RING_ANNULUS[0] - 1e-6 <= r[ds.y == 1].min() and r[ds.y == 1].max() <= RING_ANNULUS[1] + 1e-6


def test_noise_moves_points():
    a = make_dataset(Config(dataset="circles", noise=0.0))
    assert np.allclose(np.sort(np.unique(np.round(np.linalg.norm(a.x, axis=1), 4))), [0.5, 1.0])


def test_csv_reads_and_renumbers_labels():
    x, y = load_csv("x1,x2,label\n0,0,3\n1,1,7\n2,2,3\n0.5,-1,7\n")
    assert x.shape == (4, 2) and y.tolist() == [0, 1, 0, 1]
    ds = make_dataset(Config(dataset="csv", test_fraction=0.0), csv=(x, y))
    assert len(ds.x_train) == 4 and ds.n_classes == 2


@pytest.mark.parametrize(
    "text, msg",
    [
        ("", "empty"),
        ("a,b,c\n1,2,0\n", "header must be x1,x2,label"),
        ("x1,x2,label\n1,2,0\n1,x,1\n3,3,0\n4,4,1\n", "line 3: not a number"),
        ("x1,x2,label\n1,2,0\n1,nan,1\n3,3,0\n4,4,1\n", "line 3: NaN or infinite"),
        ("x1,x2,label\n1,2,0\n1,inf,1\n3,3,0\n4,4,1\n", "NaN or infinite"),
        ("x1,x2,label\n1,2,0\n1,2,0\n3,3,0\n4,4,0\n", "single class"),
        ("x1,x2,label\n1,2\n1,2,0\n3,3,0\n4,4,1\n", "expected 3 values"),
        ("x1,x2,label\n1,2,0\n1,2,0.5\n3,3,0\n4,4,1\n", "whole numbers"),
        ("x1,x2,label\n1,2,0\n", "at least 4"),
        (b"x1,x2,label\n\x00\x01\x02", "binary"),
        (b"\xff\xfe\x00garbage", "binary"),
    ],
)
def test_csv_errors_are_clear(text, msg):
    with pytest.raises(DataError, match=msg):
        load_csv(text if isinstance(text, bytes) else text.encode())


def test_csv_row_and_size_limits():
    rows = "x1,x2,label\n" + "".join(f"{i},{i},{i % 2}\n" for i in range(30))
    with pytest.raises(DataError, match="30 rows; at most 20"):
        load_csv(rows.encode(), max_rows=20)
    with pytest.raises(DataError, match="too large"):
        load_csv(rows.encode(), max_bytes=100)


def test_csv_dataset_needs_points():
    with pytest.raises(DataError, match="upload a CSV"):
        make_dataset(Config(dataset="csv"))
