"""Tests of bmx.data (the readers of bmx-train): digits split, MNIST IDX, CIFAR-10 python
batches, image folders and RecordIO, sharding, and the messages for missing data.

The MNIST and CIFAR-10 files are written here byte by byte in the real formats (struct /
pickle, independently of bmx.data's writers) and read back."""
import gzip
import os
import pickle
import struct

import numpy as np
import pytest

from bmx import data as bd
from bmx.data import DataError, get_dataset


# ----------------------------------------------------------------------------- digits
def test_digits_fixed_stratified_split():
    a = get_dataset("digits", image_size=16)
    b = get_dataset("digits", image_size=16)
    # 1,437 training images, the last 143 of them (1437 // 10) held out for validation
    assert (a.num_train, a.num_val, a.num_test, a.num_classes) == (1294, 143, 360, 10)
    assert a.image_shape == (1, 16, 16)
    np.testing.assert_array_equal(a.train_x, b.train_x)
    np.testing.assert_array_equal(a.test_y, b.test_y)
    # stratified: every class has 35-37 of the 360 test images
    counts = np.bincount(a.test_y, minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37
    # normalized with the statistics of the whole training split (train + val; float32
    # sums over 368k values: mean within 1e-5 of 0, std within 1e-4 of 1)
    full = np.concatenate([a.train_x, a.val_x])
    assert abs(float(full.mean())) < 1e-5 and abs(float(full.std()) - 1) < 1e-4


def test_digits_upscale_preserves_images():
    from sklearn.datasets import load_digits
    raw = load_digits().images.astype(np.float32)
    ds = get_dataset("digits", image_size=8)  # no resampling at the native size
    pre = ds.preprocess
    restored = ds.train_x[:, 0] * pre["std"] + pre["mean"]
    # every train image is one of the raw images (split is a permutation subset)
    flat = {r.tobytes() for r in raw}
    hits = sum(np.round(r).astype(np.float32).tobytes() in flat for r in restored[:50])
    assert hits == 50
    big = get_dataset("digits", image_size=32)
    assert big.image_shape == (1, 32, 32)
    # bilinear upscaling keeps the mean intensity roughly
    assert abs(float(big.train_x.mean())) < 0.05


# ----------------------------------------------------------------------------- sharding
def test_shards_disjoint_equal_and_deterministic():
    n = 103
    parts = [bd.shard_indices(n, seed=5, epoch=2, rank=r, num_workers=3) for r in range(3)]
    assert all(len(p) == n // 3 for p in parts)
    allidx = np.concatenate(parts)
    assert len(set(allidx.tolist())) == len(allidx)
    np.testing.assert_array_equal(parts[1], bd.shard_indices(n, 5, 2, 1, 3))
    assert not np.array_equal(bd.shard_indices(n, 5, 3, 0, 1), bd.shard_indices(n, 5, 2, 0, 1))
    with pytest.raises(ValueError):
        bd.shard_indices(n, 0, 0, rank=3, num_workers=3)


def test_train_batches_cover_epoch_once():
    ds = get_dataset("digits", image_size=8)
    ys = np.concatenate([y for _, y in ds.train_batches(0, 100, seed=1)])
    assert len(ys) == ds.num_train
    np.testing.assert_array_equal(np.sort(ys), np.sort(ds.train_y))
    assert ds.num_batches(100) == 13  # ceil(1294 / 100)
    x0 = next(ds.train_batches(4, 32, seed=1))[0]
    x1 = next(ds.train_batches(4, 32, seed=1))[0]
    np.testing.assert_array_equal(x0, x1)


# ----------------------------------------------------------------------------- MNIST
def _idx_bytes(arr, type_code=0x08):
    return bytes([0, 0, type_code, arr.ndim]) + struct.pack(">" + "I" * arr.ndim, *arr.shape) \
        + arr.astype(np.uint8).tobytes()


def _write_mnist(d, n_train=12, n_test=5, gz=False, seed=0):
    rng = np.random.RandomState(seed)
    arrays = {"train-images-idx3-ubyte": rng.randint(0, 256, (n_train, 28, 28)),
              "train-labels-idx1-ubyte": rng.randint(0, 10, n_train),
              "t10k-images-idx3-ubyte": rng.randint(0, 256, (n_test, 28, 28)),
              "t10k-labels-idx1-ubyte": rng.randint(0, 10, n_test)}
    for name, a in arrays.items():
        path = os.path.join(d, name + (".gz" if gz else ""))
        raw = _idx_bytes(np.asarray(a))
        with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
            f.write(raw)
    return arrays


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_idx_reader(tmp_path, gz):
    arrays = _write_mnist(str(tmp_path), gz=gz)
    ds = get_dataset("mnist", str(tmp_path))
    # 12 training images: 11 train + the last one as validation (12 // 10); 5 test
    assert (ds.num_train, ds.num_val, ds.num_test, ds.image_shape) == (11, 1, 5, (1, 28, 28))
    np.testing.assert_array_equal(ds.train_y, arrays["train-labels-idx1-ubyte"][:11])
    np.testing.assert_array_equal(ds.val_y, arrays["train-labels-idx1-ubyte"][11:])
    np.testing.assert_array_equal(ds.test_y, arrays["t10k-labels-idx1-ubyte"])
    expect = (arrays["train-images-idx3-ubyte"].astype(np.float32) - bd.MNIST_MEAN) / bd.MNIST_STD
    np.testing.assert_allclose(ds.train_x[:, 0], expect[:11], rtol=1e-6)


def test_mnist_subdirectory_and_write_idx_roundtrip(tmp_path):
    sub = tmp_path / "mnist"
    sub.mkdir()
    _write_mnist(str(sub))
    assert get_dataset("mnist", str(tmp_path)).num_train == 11
    a = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    p = str(tmp_path / "x-idx3-ubyte.gz")
    bd.write_idx(p, a)
    np.testing.assert_array_equal(bd.read_idx(p), a)
    with gzip.open(p, "rb") as f:
        assert f.read() == _idx_bytes(a)


def test_mnist_missing_and_malformed(tmp_path):
    with pytest.raises(DataError, match="--data-dir"):
        get_dataset("mnist", None)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte"):
        get_dataset("mnist", str(tmp_path))
    _write_mnist(str(tmp_path))
    bad = tmp_path / "t10k-labels-idx1-ubyte"
    bad.write_bytes(b"\x12\x34\x08\x01\x00\x00\x00\x05\x01")
    with pytest.raises(DataError, match="magic"):
        get_dataset("mnist", str(tmp_path))
    bad.write_bytes(bytes([0, 0, 8, 1]) + struct.pack(">I", 9) + b"\x01\x02")
    with pytest.raises(DataError, match="9"):
        get_dataset("mnist", str(tmp_path))
    bad.write_bytes(_idx_bytes(np.array([1, 2, 3])))  # 3 labels for 5 images
    with pytest.raises(DataError, match="do not match"):
        get_dataset("mnist", str(tmp_path))


# ----------------------------------------------------------------------------- CIFAR-10
def _write_cifar(d, per_batch=4, batches=2, seed=0):
    rng = np.random.RandomState(seed)
    out = {}
    names = [f"data_batch_{i + 1}" for i in range(batches)] + ["test_batch"]
    for name in names:
        x = rng.randint(0, 256, (per_batch, 3072)).astype(np.uint8)
        y = rng.randint(0, 10, per_batch).tolist()
        with open(os.path.join(d, name), "wb") as f:
            pickle.dump({b"batch_label": name.encode(), b"labels": y, b"data": x,
                         b"filenames": [b"f.png"] * per_batch}, f, protocol=2)
        out[name] = (x, y)
    return out


def test_cifar10_reader(tmp_path):
    base = tmp_path / "cifar-10-batches-py"
    base.mkdir()
    raw = _write_cifar(str(base))
    ds = get_dataset("cifar10", str(tmp_path))
    # 8 training images: 8 // 10 = 0 held out; the 4 of test_batch are the test set
    assert (ds.num_train, ds.num_val, ds.num_test, ds.image_shape) == (8, 0, 4, (3, 32, 32))
    np.testing.assert_array_equal(ds.train_y, raw["data_batch_1"][1] + raw["data_batch_2"][1])
    # CIFAR rows are 1024 R values, then G, then B, each row-major 32x32
    x, _ = raw["data_batch_1"]
    g_pixel = x[2, 1024 + 32 * 5 + 7]
    expect = (g_pixel - bd.CIFAR_MEAN[1]) / bd.CIFAR_STD[1]
    assert ds.train_x[2, 1, 5, 7] == pytest.approx(expect, rel=1e-5)
    assert ds.augment == "crop4_flip"
    xb, yb = next(ds.train_batches(0, 8, seed=0))
    assert xb.shape == (8, 3, 32, 32)


def test_cifar10_missing_and_malformed(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        get_dataset("cifar10", str(tmp_path))
    raw = _write_cifar(str(tmp_path))
    assert get_dataset("cifar10", str(tmp_path)).num_train == 8  # batches directly in DIR
    with open(tmp_path / "test_batch", "wb") as f:
        pickle.dump({b"data": raw["test_batch"][0][:, :100], b"labels": [0] * 4}, f)
    with pytest.raises(DataError, match="3072"):
        get_dataset("cifar10", str(tmp_path))
    (tmp_path / "test_batch").write_bytes(b"not a pickle")
    with pytest.raises(DataError, match="not a CIFAR-10"):
        get_dataset("cifar10", str(tmp_path))


# ----------------------------------------------------------------------------- folders / rec
def _write_images(root, classes=("cat", "dog", "eel"), per_class=3, size=20, seed=0):
    import cv2
    rng = np.random.RandomState(seed)
    for split in ("train", "val"):
        for ci, c in enumerate(classes):
            d = os.path.join(root, split, c)
            os.makedirs(d, exist_ok=True)
            for i in range(per_class):
                noise = rng.randint(0, 20, (size, size + 4, 3)).astype(np.uint8)
                img = np.full((size, size + 4, 3), 40 * ci, np.uint8) + noise
                cv2.imwrite(os.path.join(d, f"{i}.png"), img)


def test_image_folder(tmp_path):
    _write_images(str(tmp_path))
    ds = get_dataset("imagefolder", str(tmp_path), image_size=16)
    # the val folder is the test set; 9 // 10 = 0 training images held out
    assert (ds.num_classes, ds.num_train, ds.num_val, ds.num_test) == (3, 9, 0, 9)
    assert list(ds.val_batches(4)) == []
    xs, ys = zip(*ds.test_batches(4))
    x = np.concatenate(xs)
    assert x.shape == (9, 3, 16, 16)
    assert sorted(np.concatenate(ys).tolist()) == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    xt, yt = next(ds.train_batches(0, 5, seed=0))
    assert xt.shape == (5, 3, 16, 16) and xt.dtype == np.float32
    # normalized with the ImageNet mean/std: class 0 images are dark -> negative values
    assert float(x[np.concatenate(ys) == 0].mean()) < -1.0


def test_recordio(tmp_path):
    import cv2
    import mxnet as mx
    rng = np.random.RandomState(0)
    for split, n in (("train", 6), ("val", 4)):
        rec = mx.recordio.MXIndexedRecordIO(str(tmp_path / f"{split}.idx"),
                                            str(tmp_path / f"{split}.rec"), "w")
        for i in range(n):
            img = rng.randint(0, 255, (24, 24, 3)).astype(np.uint8)
            header = mx.recordio.IRHeader(0, float(i % 3), i, 0)
            rec.write_idx(i, mx.recordio.pack_img(header, img, img_fmt=".png"))
        rec.close()
    ds = get_dataset("imagenet", str(tmp_path), image_size=16, classes=3)
    assert (ds.num_train, ds.num_val, ds.num_test, ds.num_classes) == (6, 0, 4, 3)
    xv, yv = next(ds.test_batches(8))
    assert xv.shape == (4, 3, 16, 16)
    np.testing.assert_array_equal(yv, [0, 1, 2, 0])


def test_folder_and_rec_missing(tmp_path):
    with pytest.raises(DataError, match="train.rec"):
        get_dataset("imagenet", str(tmp_path))
    with pytest.raises(DataError, match="train/<class>"):
        get_dataset("imagefolder", str(tmp_path))
    with pytest.raises(DataError, match="does not exist"):
        get_dataset("imagefolder", str(tmp_path / "nope"))
    with pytest.raises(DataError, match="unknown dataset"):
        get_dataset("svhn")


def test_synthetic_is_learnable_and_fixed():
    a = get_dataset("synthetic", image_size=8)
    b = get_dataset("synthetic", image_size=8)
    np.testing.assert_array_equal(a.train_x, b.train_x)
    # nearest class mean separates the classes far above chance
    means = np.stack([a.train_x[a.train_y == c].mean(0).ravel() for c in range(10)])
    d = ((a.test_x.reshape(len(a.test_x), -1)[:, None] - means[None]) ** 2).sum(-1)
    assert (d.argmin(1) == a.test_y).mean() > 0.8


# ----------------------------------------------------------------------------- splits
def test_val_split_is_the_end_of_the_training_images(tmp_path):
    arrays = _write_mnist(str(tmp_path))
    full = arrays["train-labels-idx1-ubyte"]
    ds = get_dataset("mnist", str(tmp_path), val_split=4)
    assert (ds.num_train, ds.num_val, ds.num_test) == (8, 4, 5)
    np.testing.assert_array_equal(np.concatenate([ds.train_y, ds.val_y]), full)
    none = get_dataset("mnist", str(tmp_path), val_split=0)
    assert (none.num_train, none.num_val, list(none.val_batches(4))) == (12, 0, [])
    with pytest.raises(DataError, match="--val-split 12: must lie in 0..11"):
        get_dataset("mnist", str(tmp_path), val_split=12)


def test_folder_val_split_reads_training_images_with_the_eval_transform(tmp_path):
    _write_images(str(tmp_path))
    ds = get_dataset("imagefolder", str(tmp_path), image_size=16, val_split=3)
    assert (ds.num_train, ds.num_val, ds.num_test) == (6, 3, 9)
    xv, yv = next(ds.val_batches(8))
    # the last 3 training images are class 2 (folders are read in class order)
    assert xv.shape == (3, 3, 16, 16) and yv.tolist() == [2, 2, 2]
    seen = np.concatenate([y for _, y in ds.train_batches(0, 4, seed=0)])
    assert sorted(seen.tolist()) == [0, 0, 0, 1, 1, 1]


def test_limit_train_keeps_the_first_images():
    ds = get_dataset("digits", image_size=8)
    y = ds.train_y.copy()
    ds.limit_train(100)
    assert ds.num_train == 100 and ds.num_batches(32) == 4
    np.testing.assert_array_equal(ds.train_y, y[:100])


@pytest.mark.parametrize("bad", ["crop0", "crop", "flip", "crop2_flop"])
def test_bad_augmentation_is_named(bad):
    with pytest.raises(DataError, match="unknown augmentation"):
        get_dataset("digits", augment=bad)


def test_crop_flip_moves_and_mirrors_images():
    x = np.zeros((64, 1, 6, 6), np.float32)
    x[:, 0, 1, 1] = 1.0   # one bright pixel on a dark background
    ds = bd.InMemoryDataset(x, np.zeros(64), x[:1], np.zeros(1), 1, "t", augment="crop2_flip")
    out, _ = next(ds.train_batches(0, 64, seed=0))
    pos = [tuple(np.argwhere(o[0] == 1.0)[0]) for o in out if (o[0] == 1.0).any()]
    rows = {p[0] for p in pos}
    cols = {p[1] for p in pos}
    # shifted by up to 2 pixels each way (pixels pushed out of the frame are lost), and
    # mirrored columns (5 - c) appear
    assert rows <= {0, 1, 2, 3} and len(rows) > 1
    assert any(c >= 3 for c in cols) and any(c <= 2 for c in cols)
    assert all(v in (0.0, 1.0) for v in np.unique(out))


FASHION = bd.FASHION_MNIST_DIRS[0]


@pytest.mark.skipif(not os.path.isfile(os.path.join(FASHION, "train-images-idx3-ubyte.gz")),
                    reason="Debian's dataset-fashion-mnist is not installed (make env installs it)")
def test_fashion_mnist_from_the_debian_package():
    ds = get_dataset("fashion-mnist")
    assert (ds.num_train, ds.num_val, ds.num_test, ds.image_shape) == (55000, 5000, 10000,
                                                                       (1, 28, 28))
    assert ds.class_names[0] == "T-shirt/top" and ds.class_names[9] == "Ankle boot"
    # the test set is balanced: 1,000 images per class
    assert np.bincount(ds.test_y, minlength=10).tolist() == [1000] * 10
    # normalized with the recorded raw-pixel statistics; the published mean/std (72.94, 90.02)
    raw = bd.read_idx(os.path.join(FASHION, "train-images-idx3-ubyte.gz")).astype(np.float64)
    assert abs(raw.mean() - 72.94) < 0.01 and abs(raw.std() - 90.02) < 0.01
    m, s = ds.preprocess["mean"][0], ds.preprocess["std"][0]
    np.testing.assert_allclose(ds.test_x[:3, 0] * s + m,
                               bd.read_idx(os.path.join(FASHION, "t10k-images-idx3-ubyte.gz"))[:3],
                               atol=1e-3)
    with pytest.raises(DataError, match="--image-size must be 28"):
        get_dataset("fashion-mnist", image_size=32)


def test_fashion_mnist_missing_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setattr(bd, "FASHION_MNIST_DIRS", (str(tmp_path / "nowhere"),))
    with pytest.raises(DataError, match="dataset-fashion-mnist"):
        get_dataset("fashion-mnist")
