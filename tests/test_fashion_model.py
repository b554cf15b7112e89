"""The shipped Fashion-MNIST model (examples/fashion_mnist/model.bmx), scored by a reader of
the raw test files written here (gzip + numpy, independent of bmx.data) through
bmx.engine.Model: it records the raw-pixel normalisation and gives exactly the accuracy
that examples/fashion_mnist/eval/eval.json reports."""
import gzip
import json
import os

import numpy as np
import pytest

from bmx.engine import Model

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HERE = os.path.join(ROOT, "examples", "fashion_mnist")
DATA = "/usr/share/datasets/fashion-mnist"

pytestmark = pytest.mark.skipif(
    not os.path.isfile(os.path.join(DATA, "t10k-images-idx3-ubyte.gz")),
    reason="Debian's dataset-fashion-mnist is not installed (make env installs it)")


def _idx(name):
    with gzip.open(os.path.join(DATA, name), "rb") as f:
        data = f.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)


def test_shipped_model_scores_what_it_reports():
    m = Model(os.path.join(HERE, "model.bmx"), num_threads=2)
    assert m.input_shape == (1, 1, 28, 28) and m.num_classes == 10
    # the mean/std of the 60,000 training images on the raw 0..255 scale
    assert m.mean == pytest.approx([72.9404]) and m.std == pytest.approx([90.0212])
    raw = _idx("t10k-images-idx3-ubyte.gz")
    labels = _idx("t10k-labels-idx1-ubyte.gz").astype(np.int64)
    x = ((raw.astype(np.float32) - np.float32(m.mean[0])) / np.float32(m.std[0]))[:, None]
    np.testing.assert_array_equal(x, m.preprocess(raw))
    pred = np.concatenate([m.predict(x[i:i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    correct = int((pred == labels).sum())
    report = json.load(open(os.path.join(HERE, "eval", "eval.json")))
    assert (report["images"], report["correct"]) == (10000, correct)
    summary = json.load(open(os.path.join(HERE, "summary.json")))
    # Gluon's test accuracy of the same parameters, recorded by bmx-train: engine and Gluon
    # differ on report["engine_gluon_disagreements"] images
    assert abs(summary["test_acc"] * 10000 - correct) <= report["engine_gluon_disagreements"]
