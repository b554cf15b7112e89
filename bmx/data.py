"""Datasets of ``bmx-train``: offline digits, Fashion-MNIST, MNIST, CIFAR-10, ImageNet,
image folders.

Bethge et al., "Back to Simplicity: How to Train Accurate BNNs from Scratch?" (2019),
section 6 of the bmx spec for the ImageNet recipe (random-resized-crop 224, area
0.08-1, aspect 3/4-4/3, horizontal flip; eval resize 256, centre crop 224; mean
123.68/116.779/103.939, std 58.393/57.12/57.375).

Nothing is downloaded. Every reader validates the files it reads and raises
:class:`DataError` with a message saying what to put where.

Every dataset has three parts: ``train``, a held-out ``val`` split cut from the end of the
training images (``val_split`` images, default ``min(5000, N // 10)``: the last 5,000 of
Fashion-MNIST's 60,000), which drives the curves and the choice of the best epoch, and
``test``, the dataset's own test set (for ImageNet-style folders: the ``val`` folder),
scored once at the end of a run.

Data order is a pure function of ``(seed, epoch)``: the train permutation of epoch ``e``
is ``RandomState(seed, e).permutation``; workers of a distributed run take disjoint,
equally long shards of it (by rank), so every worker does the same number of steps.
The in-memory datasets (digits, mnist, cifar10, synthetic) also draw their augmentation
from that generator, which makes an interrupted and resumed run bit-identical to an
uninterrupted one.
"""
import gzip
import os
import pickle
import re
import struct

import numpy as np

__all__ = ["DataError", "DATASETS", "get_dataset", "InMemoryDataset", "FolderDataset",
           "load_digits_split", "read_idx", "load_mnist", "load_fashion_mnist", "load_cifar10",
           "write_idx", "default_val_split", "IMAGENET_MEAN", "IMAGENET_STD",
           "FASHION_MNIST_CLASSES", "FASHION_MNIST_DIRS"]

DATASETS = ("digits", "fashion-mnist", "mnist", "cifar10", "imagenet", "imagefolder",
            "synthetic")

IMAGENET_MEAN = (123.68, 116.779, 103.939)
IMAGENET_STD = (58.393, 57.12, 57.375)
CIFAR_MEAN = (125.307, 122.961, 113.8575)
CIFAR_STD = (51.5865, 50.847, 51.255)
MNIST_MEAN, MNIST_STD = 33.318, 78.567
#: mean and std of the 60,000 Fashion-MNIST training images, raw 0..255 scale
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 72.9404, 90.0212
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                         "Shirt", "Sneaker", "Bag", "Ankle boot")
#: where Debian's package dataset-fashion-mnist installs the four IDX files
FASHION_MNIST_DIRS = ("/usr/share/datasets/fashion-mnist",)

#: default input side per dataset (the digits are 8x8 upscaled; see load_digits_split)
DEFAULT_IMAGE_SIZE = {"digits": 16, "fashion-mnist": 28, "mnist": 28, "cifar10": 32,
                      "imagenet": 224, "imagefolder": 224, "synthetic": 16}
#: augmentation of the training images per in-memory dataset (see InMemoryDataset)
DEFAULT_AUGMENT = {"digits": None, "fashion-mnist": "crop2_flip", "mnist": None,
                   "cifar10": "crop4_flip", "synthetic": None}


def default_val_split(num_train):
    """Images held out from the end of the training set by default: ``min(5000, N // 10)``."""
    return min(5000, int(num_train) // 10)


class DataError(Exception):
    """Missing or malformed data; the message says what to put where."""


def _epoch_rng(seed, epoch, salt=0):
    # Independent stream per (seed, epoch): resuming at epoch e reproduces it exactly.
    return np.random.RandomState(np.random.SeedSequence([int(seed), int(epoch), int(salt)])
                                 .generate_state(1)[0])


def shard_indices(n, seed, epoch, rank=0, num_workers=1, shuffle=True):
    """Indices of this worker's shard of epoch ``epoch``: the epoch permutation cut into
    ``num_workers`` equal parts (``n // num_workers`` each; the remainder is dropped so
    that every worker runs the same number of synchronous steps)."""
    if num_workers < 1 or not 0 <= rank < num_workers:
        raise ValueError(f"bad rank {rank} of {num_workers} workers")
    order = _epoch_rng(seed, epoch).permutation(n) if shuffle else np.arange(n)
    per = n // num_workers
    return order[rank * per:(rank + 1) * per]


# --------------------------------------------------------------------------- in memory
class InMemoryDataset:
    """Images held as normalized float32 NCHW arrays (digits, MNIST, CIFAR-10, synthetic).

    Parameters
    ----------
    train_x, val_x, test_x : ndarray, float32 (N, C, H, W), already normalized
    train_y, val_y, test_y : ndarray, int (N,)
        ``val``: held out from the training images (model selection); ``test``: the
        dataset's test set (scored once); ``test_x=None`` when the dataset has none.
    num_classes : int
    name : str
    augment : {None, 'cropP', 'cropP_flip'}
        Random crop of the image padded by ``P`` pixels (a translation by up to ``P``),
        ``_flip``: and a horizontal flip with probability 1/2; drawn from the epoch RNG.
        ``'crop_flip'`` (CIFAR: pad 4) and ``'shift'`` (pad 1) are the older names.
    class_names : sequence of str, optional
    """

    deterministic = True

    def __init__(self, train_x, train_y, val_x, val_y, num_classes, name, augment=None,
                 preprocess=None, test_x=None, test_y=None, class_names=None):
        self.train_x = np.ascontiguousarray(train_x, dtype=np.float32)
        self.train_y = np.asarray(train_y, dtype=np.int64)
        self.val_x = np.ascontiguousarray(val_x, dtype=np.float32)
        self.val_y = np.asarray(val_y, dtype=np.int64)
        self.test_x = None if test_x is None else np.ascontiguousarray(test_x, np.float32)
        self.test_y = None if test_y is None else np.asarray(test_y, dtype=np.int64)
        self.num_classes = int(num_classes)
        self.name = name
        self.augment = augment
        self._crop = _parse_augment(augment)
        self.class_names = list(class_names) if class_names else None
        #: how raw images become network inputs (for users of the exported model)
        self.preprocess = preprocess or {}
        for what, x, y in (("train", self.train_x, self.train_y),
                           ("validation", self.val_x, self.val_y),
                           ("test", self.test_x, self.test_y)):
            if x is None and y is None and what == "test":
                continue
            if x is None or y is None or x.ndim != 4 or len(x) != len(y):
                raise DataError(f"{name}: {what} images "
                                f"{None if x is None else x.shape} do not match labels "
                                f"{None if y is None else y.shape}")

    @property
    def image_shape(self):
        return tuple(self.train_x.shape[1:])

    @property
    def num_train(self):
        return len(self.train_y)

    @property
    def num_val(self):
        return len(self.val_y)

    @property
    def num_test(self):
        return 0 if self.test_y is None else len(self.test_y)

    def num_batches(self, batch_size, num_workers=1):
        per = self.num_train // num_workers
        return (per + batch_size - 1) // batch_size

    def train_batches(self, epoch, batch_size, seed, rank=0, num_workers=1):
        """Yield ``(x, y)`` numpy batches of this worker's shard of epoch ``epoch``."""
        idx = shard_indices(self.num_train, seed, epoch, rank, num_workers)
        rng = _epoch_rng(seed, epoch, salt=1 + rank)
        for s in range(0, len(idx), batch_size):
            b = idx[s:s + batch_size]
            x = self.train_x[b]
            if self._crop is not None:
                x = self._augment(x, rng)
            yield x, self.train_y[b]

    def val_batches(self, batch_size):
        """The held-out validation split, in order."""
        for s in range(0, self.num_val, batch_size):
            yield self.val_x[s:s + batch_size], self.val_y[s:s + batch_size]

    def limit_train(self, n):
        """Keep only the first ``n`` training images (a smaller study, a quick run)."""
        self.train_x, self.train_y = self.train_x[:n], self.train_y[:n]
        return self

    def test_batches(self, batch_size):
        """The dataset's test set, in order (nothing when it has none)."""
        for s in range(0, self.num_test, batch_size):
            yield self.test_x[s:s + batch_size], self.test_y[s:s + batch_size]

    def _augment(self, x, rng):
        pad, flip = self._crop
        n, c, h, w = x.shape
        # pad with the darkest value of the batch (the background of these data sets)
        xp = np.full((n, c, h + 2 * pad, w + 2 * pad), x.min(), dtype=np.float32)
        xp[:, :, pad:pad + h, pad:pad + w] = x
        oy = rng.randint(0, 2 * pad + 1, size=n)
        ox = rng.randint(0, 2 * pad + 1, size=n)
        out = np.empty_like(x)
        for i in range(n):
            out[i] = xp[i, :, oy[i]:oy[i] + h, ox[i]:ox[i] + w]
        if flip:
            f = rng.rand(n) < 0.5
            out[f] = out[f, :, :, ::-1]
        return out


_AUGMENT_ALIASES = {"crop_flip": "crop4_flip", "shift": "crop1"}


def _parse_augment(augment):
    """``None`` or ``'cropP[_flip]'`` -> None or (P, flip)."""
    if augment is None:
        return None
    name = _AUGMENT_ALIASES.get(augment, augment)
    m = re.fullmatch(r"crop(\d+)(_flip)?", str(name))
    if not m or int(m.group(1)) < 1:
        raise DataError(f"unknown augmentation {augment!r}; expected None, 'cropP' or "
                        "'cropP_flip' with P >= 1 pixels (e.g. 'crop2_flip')")
    return int(m.group(1)), m.group(2) is not None


def _holdout(x, y, n):
    """Split off the last ``n`` training images as the validation split."""
    n = int(n)
    if n < 0 or n >= len(y):
        raise DataError(f"--val-split {n}: must lie in 0..{len(y) - 1} (the training set has "
                        f"{len(y)} images)")
    k = len(y) - n
    return x[:k], y[:k], x[k:], y[k:]


def load_digits_split(image_size=16, test_fraction=0.2):
    """scikit-learn's bundled handwritten digits (1,797 images of 8x8, offline).

    The split is fixed: stratified, ``random_state=0``, 20% test (1,437 train / 360 test).
    Images are upscaled bilinearly to ``image_size`` and normalized by the train mean/std
    of the intensity scale 0..16.

    Returns
    -------
    (train_x, train_y, test_x, test_y, preprocess) with x float32 (N, 1, S, S).
    """
    try:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split
    except ImportError:  # pragma: no cover - scikit-learn is in requirements.txt
        raise DataError("the digits dataset needs scikit-learn: pip install scikit-learn") from None
    d = load_digits()
    x = d.images.astype(np.float32)  # 0..16
    y = d.target.astype(np.int64)
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=test_fraction, stratify=y,
                                          random_state=0)
    xtr, xte = _resize_stack(xtr, image_size), _resize_stack(xte, image_size)
    mean, std = float(xtr.mean()), float(xtr.std())
    pre = {"source": "sklearn.datasets.load_digits", "split": "train_test_split("
           f"test_size={test_fraction}, stratify=y, random_state=0)",
           "resize": f"bilinear 8x8 -> {image_size}x{image_size} (scipy.ndimage.zoom order=1)",
           "mean": [mean], "std": [std], "scale": "raw 0..16"}
    norm = lambda a: ((a - mean) / std)[:, None].astype(np.float32)  # noqa: E731
    return norm(xtr), ytr, norm(xte), yte, pre


def _resize_stack(x, size):
    if x.shape[-1] == size and x.shape[-2] == size:
        return x
    from scipy.ndimage import zoom
    f = (1, size / x.shape[1], size / x.shape[2])
    return zoom(x, f, order=1, mode="nearest", grid_mode=True).astype(np.float32)


# --------------------------------------------------------------------------- MNIST (IDX)
_IDX_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
              0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


def _open(path):
    with open(path, "rb") as f:
        head = f.read(2)
    return gzip.open(path, "rb") if head == b"\x1f\x8b" else open(path, "rb")


def read_idx(path):
    """Read an IDX file (LeCun's MNIST format, optionally gzip-compressed) into numpy.

    Header: two zero bytes, a type byte (0x08 = uint8), the number of dimensions, then
    one big-endian uint32 per dimension, then the data in C order.
    """
    with _open(path) as f:
        data = f.read()
    if len(data) < 4 or data[0] != 0 or data[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    dtype = _IDX_TYPES.get(data[2])
    if dtype is None:
        raise DataError(f"{path}: unknown IDX data type 0x{data[2]:02x}")
    ndim = data[3]
    if ndim < 1 or len(data) < 4 + 4 * ndim:
        raise DataError(f"{path}: truncated IDX header")
    shape = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    count = int(np.prod(shape))
    body = data[4 + 4 * ndim:]
    need = count * np.dtype(dtype).itemsize
    if len(body) != need:
        raise DataError(f"{path}: IDX header says shape {shape} ({need} bytes) "
                        f"but the file holds {len(body)} bytes")
    return np.frombuffer(body, dtype=dtype).reshape(shape)


def write_idx(path, array):
    """Write a uint8 array as an IDX file (gzip if the name ends with .gz)."""
    a = np.ascontiguousarray(array, dtype=np.uint8)
    head = bytes([0, 0, 0x08, a.ndim]) + struct.pack(">" + "I" * a.ndim, *a.shape)
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wb") as f:
        f.write(head + a.tobytes())


_MNIST_FILES = {"train_x": "train-images-idx3-ubyte", "train_y": "train-labels-idx1-ubyte",
                "test_x": "t10k-images-idx3-ubyte", "test_y": "t10k-labels-idx1-ubyte"}


def _find_file(dirs, stem):
    for d in dirs:
        for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"),
                     stem.replace("-idx", ".idx") + ".gz"):
            p = os.path.join(d, name)
            if os.path.isfile(p):
                return p
    return None


def load_mnist(data_dir):
    """Read the four MNIST IDX files from ``data_dir`` (or ``data_dir/mnist``)."""
    hint = ("put the four IDX files from http://yann.lecun.com/exdb/mnist/, gzipped or not, "
            "in that directory; nothing is downloaded")
    return _load_idx_set("mnist", data_dir, MNIST_MEAN, MNIST_STD, hint)


def load_fashion_mnist(data_dir=None):
    """Read Fashion-MNIST's four IDX files (Xiao et al., 2017; 28x28 grayscale, 10 classes).

    ``data_dir=None`` looks where Debian's package ``dataset-fashion-mnist`` installs them
    (:data:`FASHION_MNIST_DIRS`). Normalized with the training set's mean/std on the raw
    0..255 scale (:data:`FASHION_MNIST_MEAN`, :data:`FASHION_MNIST_STD`).
    """
    hint = ("install Debian's package dataset-fashion-mnist (apt-get install "
            "dataset-fashion-mnist; make env does) or pass --data-dir DIR with the four IDX "
            "files; nothing is downloaded")
    if data_dir is None:
        data_dir = next((d for d in FASHION_MNIST_DIRS
                         if _find_file([d], _MNIST_FILES["train_x"])), None)
        if data_dir is None:
            raise DataError(f"Fashion-MNIST not found in {', '.join(FASHION_MNIST_DIRS)}: "
                            + hint)
    return _load_idx_set("fashion-mnist", data_dir, FASHION_MNIST_MEAN, FASHION_MNIST_STD,
                         hint)


def _load_idx_set(name, data_dir, mean, std, hint):
    """The four IDX files of an MNIST-format set -> (train_x, train_y, test_x, test_y, pre)."""
    if not data_dir:
        raise DataError(f"--dataset {name} needs --data-dir DIR holding the four IDX files: "
                        + ", ".join(_MNIST_FILES.values()) + " (.gz accepted)")
    dirs = [data_dir, os.path.join(data_dir, name), os.path.join(data_dir, "MNIST", "raw")]
    found = {k: _find_file(dirs, v) for k, v in _MNIST_FILES.items()}
    missing = [_MNIST_FILES[k] for k, p in found.items() if p is None]
    if missing:
        title = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}.get(name, name)
        raise DataError(f"{title} files missing in {data_dir}: {', '.join(missing)} ({hint})")
    arrays = {k: read_idx(p) for k, p in found.items()}
    for split in ("train", "test"):
        x, y = arrays[split + "_x"], arrays[split + "_y"]
        if x.ndim != 3 or y.ndim != 1 or len(x) != len(y):
            raise DataError(f"{name} {split}: images {x.shape} and labels {y.shape} do not "
                            "match (expected (N, 28, 28) and (N,))")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise DataError(f"{name} {split}: labels outside 0..9")
    norm = lambda a: ((a.astype(np.float32) - mean) / std)[:, None]  # noqa: E731
    pre = {"source": f"{name} IDX files in {os.path.abspath(data_dir)}", "mean": [mean],
           "std": [std], "scale": "raw 0..255, grayscale", "layout": "NCHW (N, 1, 28, 28)"}
    return (norm(arrays["train_x"]), arrays["train_y"].astype(np.int64),
            norm(arrays["test_x"]), arrays["test_y"].astype(np.int64), pre)


# --------------------------------------------------------------------------- CIFAR-10
def load_cifar10(data_dir):
    """Read CIFAR-10's python batches (``data_batch_1..5``, ``test_batch``) from
    ``data_dir`` or ``data_dir/cifar-10-batches-py``."""
    hint = ("put the python version of CIFAR-10 (cifar-10-python.tar.gz from "
            "https://www.cs.toronto.edu/~kriz/cifar.html, extracted: data_batch_1..5 and "
            "test_batch) in DIR or DIR/cifar-10-batches-py; nothing is downloaded")
    if not data_dir:
        raise DataError("--dataset cifar10 needs --data-dir DIR: " + hint)
    base = None
    for d in (os.path.join(data_dir, "cifar-10-batches-py"), data_dir):
        if os.path.isfile(os.path.join(d, "test_batch")):
            base = d
            break
    if base is None:
        raise DataError(f"CIFAR-10 batches not found in {data_dir}: " + hint)
    train = sorted(f for f in os.listdir(base) if f.startswith("data_batch_"))
    if not train:
        raise DataError(f"no data_batch_* files in {base}: " + hint)

    def read(name):
        path = os.path.join(base, name)
        try:
            with open(path, "rb") as f:
                d = pickle.load(f, encoding="bytes")
        except Exception as e:  # noqa: BLE001 - any unpickling failure is bad data
            raise DataError(f"{path}: not a CIFAR-10 python batch ({e})") from None
        if not isinstance(d, dict):
            raise DataError(f"{path}: not a CIFAR-10 python batch (no dict)")
        x = d.get(b"data", d.get("data"))
        y = d.get(b"labels", d.get("labels"))
        if x is None or y is None:
            raise DataError(f"{path}: CIFAR-10 batch without 'data'/'labels'")
        x = np.asarray(x, dtype=np.uint8)
        y = np.asarray(y, dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
            raise DataError(f"{path}: data {x.shape} / labels {y.shape}, expected (N, 3072) / (N,)")
        if y.size and (y.min() < 0 or y.max() > 9):
            raise DataError(f"{path}: labels outside 0..9")
        return x.reshape(-1, 3, 32, 32), y

    parts = [read(f) for f in train]
    xtr = np.concatenate([p[0] for p in parts])
    ytr = np.concatenate([p[1] for p in parts])
    xte, yte = read("test_batch")
    mean = np.array(CIFAR_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.array(CIFAR_STD, np.float32).reshape(1, 3, 1, 1)
    norm = lambda a: ((a.astype(np.float32) - mean) / std).astype(np.float32)  # noqa: E731
    pre = {"source": "CIFAR-10 python batches", "mean": list(CIFAR_MEAN), "std": list(CIFAR_STD),
           "scale": "raw 0..255, RGB"}
    return norm(xtr), ytr, norm(xte), yte, pre


def write_cifar_batch(path, images_nchw_uint8, labels):
    """Write a CIFAR-10 python batch (the real pickle layout); used by tests."""
    x = np.asarray(images_nchw_uint8, np.uint8).reshape(len(labels), 3072)
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"bmx", b"labels": [int(v) for v in labels],
                     b"data": x, b"filenames": [b"img%d.png" % i for i in range(len(labels))]},
                    f, protocol=2)


# --------------------------------------------------------------------------- synthetic
def make_synthetic(image_size=16, channels=3, classes=10, num_train=1024, num_val=256, seed=0):
    """Learnable synthetic data: one fixed random template per class plus Gaussian noise."""
    rng = np.random.RandomState(seed)
    tmpl = rng.randn(classes, channels, image_size, image_size).astype(np.float32)

    def draw(n):
        y = rng.randint(0, classes, size=n)
        x = tmpl[y] + 1.5 * rng.randn(n, channels, image_size, image_size).astype(np.float32)
        return (x / np.sqrt(1 + 1.5 ** 2)).astype(np.float32), y

    xtr, ytr = draw(num_train)
    xva, yva = draw(num_val)
    return xtr, ytr, xva, yva, {"source": f"synthetic templates+noise, seed {seed}"}


# --------------------------------------------------------------------------- folders / rec
class FolderDataset:
    """ImageNet-style data read by Gluon (RecordIO or an image folder) with the spec's
    augmentation, loaded by a :class:`mxnet.gluon.data.DataLoader`.

    The order of the samples is deterministic (seed, epoch, rank); the random crops and
    flips come from MXNet's RNG inside the loader workers, so resuming such a run is
    statistically, not bitwise, equivalent.
    """

    deterministic = False

    def __init__(self, train, val, num_classes, name, image_size=224, num_workers=0,
                 val_split=0, class_names=None):
        # ``val`` (the folder) is the test set; the validation split is the last
        # ``val_split`` training images, read with the evaluation transform.
        self.train, self.test = train, val
        n = len(train)
        if not 0 <= int(val_split) < n:
            raise DataError(f"--val-split {val_split}: must lie in 0..{n - 1} (the training "
                            f"set has {n} images)")
        self._train_idx = np.arange(n - int(val_split))
        self._val_idx = np.arange(n - int(val_split), n)
        self.class_names = list(class_names) if class_names else None
        self.num_classes = int(num_classes)
        self.name = name
        self.image_size = int(image_size)
        self.num_workers = int(num_workers)
        self.preprocess = {"source": name, "eval": f"resize short side to "
                           f"{int(round(image_size / 0.875))}, centre crop {image_size}",
                           "mean": list(IMAGENET_MEAN), "std": list(IMAGENET_STD),
                           "scale": "raw 0..255, RGB"}
        from mxnet.gluon.data.vision import transforms as T
        s = self.image_size
        mean = tuple(m / 255.0 for m in IMAGENET_MEAN)
        std = tuple(v / 255.0 for v in IMAGENET_STD)
        self._train_tf = T.Compose([
            T.RandomResizedCrop(s, scale=(0.08, 1.0), ratio=(3.0 / 4.0, 4.0 / 3.0)),
            T.RandomFlipLeftRight(), T.ToTensor(), T.Normalize(mean, std)])
        self._val_tf = T.Compose([T.Resize(int(round(s / 0.875)), keep_ratio=True),
                                  T.CenterCrop(s), T.ToTensor(), T.Normalize(mean, std)])

    @property
    def image_shape(self):
        return (3, self.image_size, self.image_size)

    @property
    def num_train(self):
        return len(self._train_idx)

    @property
    def num_val(self):
        return len(self._val_idx)

    @property
    def num_test(self):
        return len(self.test)

    def num_batches(self, batch_size, num_workers=1):
        per = self.num_train // num_workers
        return (per + batch_size - 1) // batch_size

    def _loader(self, dataset, indices, batch_size):
        from mxnet import gluon
        sampler = gluon.data.BatchSampler(_ListSampler(indices), batch_size, last_batch="keep")
        return gluon.data.DataLoader(dataset, batch_sampler=sampler,
                                     num_workers=self.num_workers, thread_pool=False)

    def train_batches(self, epoch, batch_size, seed, rank=0, num_workers=1):
        idx = self._train_idx[shard_indices(self.num_train, seed, epoch, rank, num_workers)]
        ds = self.train.transform_first(self._train_tf)
        for x, y in self._loader(ds, idx, batch_size):
            yield x.asnumpy(), y.asnumpy().astype(np.int64)

    def limit_train(self, n):
        """Keep only the first ``n`` training images (a smaller study, a quick run)."""
        self._train_idx = self._train_idx[:n]
        return self

    def _eval_batches(self, dataset, indices, batch_size):
        if len(indices) == 0:
            return
        ds = dataset.transform_first(self._val_tf)
        for x, y in self._loader(ds, indices, batch_size):
            yield x.asnumpy(), y.asnumpy().astype(np.int64)

    def val_batches(self, batch_size):
        """The held-out validation split (end of the training images), in order."""
        return self._eval_batches(self.train, self._val_idx, batch_size)

    def test_batches(self, batch_size):
        """The test set (the ``val`` folder / ``val.rec``), in order."""
        return self._eval_batches(self.test, np.arange(self.num_test), batch_size)


class _ListSampler:
    def __init__(self, indices):
        self.indices = [int(i) for i in indices]

    def __iter__(self):
        return iter(self.indices)

    def __len__(self):
        return len(self.indices)


def _load_rec(data_dir):
    from mxnet.gluon.data.vision import ImageRecordDataset
    hint = ("put train.rec/train.idx and val.rec/val.idx (made by MXNet's tools/im2rec.py "
            "with --pack-label) in DIR, or use --dataset imagefolder with DIR/train/<class>/"
            "*.jpg and DIR/val/<class>/*.jpg; nothing is downloaded")
    if not data_dir:
        raise DataError("--dataset imagenet needs --data-dir DIR: " + hint)
    paths = {}
    for split in ("train", "val"):
        rec = os.path.join(data_dir, split + ".rec")
        idx = os.path.join(data_dir, split + ".idx")
        if not (os.path.isfile(rec) and os.path.isfile(idx)):
            if split == "train" and os.path.isdir(os.path.join(data_dir, "train")):
                return None  # an image folder: let the caller fall back to it
            raise DataError(f"ImageNet RecordIO files missing in {data_dir}: {split}.rec and "
                            f"{split}.idx (" + hint + ")")
        paths[split] = rec
    try:
        return ImageRecordDataset(paths["train"]), ImageRecordDataset(paths["val"])
    except Exception as e:  # noqa: BLE001
        raise DataError(f"cannot read the RecordIO files in {data_dir}: {e}") from None


def _load_folder(data_dir, name):
    from mxnet.gluon.data.vision import ImageFolderDataset
    hint = ("expected DIR/train/<class>/<image> and DIR/val/<class>/<image> (one sub-folder "
            "per class, same class names in both); nothing is downloaded")
    if not data_dir:
        raise DataError(f"--dataset {name} needs --data-dir DIR: " + hint)
    dirs = {s: os.path.join(data_dir, s) for s in ("train", "val")}
    for s, d in dirs.items():
        if not os.path.isdir(d):
            raise DataError(f"image folder {d} not found: " + hint)
    train, val = ImageFolderDataset(dirs["train"]), ImageFolderDataset(dirs["val"])
    if not train.synsets or len(train) == 0:
        raise DataError(f"no images found under {dirs['train']}: " + hint)
    if train.synsets != val.synsets:
        raise DataError(f"class folders differ between {dirs['train']} and {dirs['val']}")
    if len(val) == 0:
        raise DataError(f"no images found under {dirs['val']}: " + hint)
    return train, val


# --------------------------------------------------------------------------- entry point
def get_dataset(name, data_dir=None, image_size=None, num_workers=0, classes=None,
                val_split=None, augment="default"):
    """Build the dataset ``name`` (one of :data:`DATASETS`) with its three parts.

    Parameters
    ----------
    val_split : int, optional
        Training images held out (from the end) as the validation split; default
        :func:`default_val_split` (5,000 for Fashion-MNIST); 0 for none.
    augment : str or None, optional
        Training augmentation of the in-memory sets (see :class:`InMemoryDataset`);
        ``'default'``: the dataset's own (:data:`DEFAULT_AUGMENT`).

    Raises
    ------
    DataError
        Missing or malformed files, a bad split; the message says what to do.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    size = int(image_size or DEFAULT_IMAGE_SIZE[name])
    if name in ("digits", "fashion-mnist", "mnist", "cifar10", "synthetic"):
        native = {"fashion-mnist": 28, "mnist": 28, "cifar10": 32}.get(name)
        if native is not None and size != native:
            raise DataError(f"{name} images are {native}x{native}; --image-size must be "
                            f"{native} (or left out)")
        return _in_memory(name, data_dir, size, classes, val_split, augment)
    if data_dir and not os.path.isdir(data_dir):
        raise DataError(f"--data-dir {data_dir} does not exist")
    names = None
    if name == "imagenet":
        pair = _load_rec(data_dir)
        if pair is None:
            train, val = _load_folder(data_dir, name)
            n, names = len(train.synsets), list(train.synsets)
        else:
            train, val = pair
            n = classes or 1000
    else:
        train, val = _load_folder(data_dir, name)
        n, names = len(train.synsets), list(train.synsets)
    vs = default_val_split(len(train)) if val_split is None else val_split
    return FolderDataset(train, val, n, name, image_size=size, num_workers=num_workers,
                         val_split=vs, class_names=names)


def _in_memory(name, data_dir, size, classes, val_split, augment):
    names = None
    if name == "digits":
        xtr, ytr, xte, yte, pre = load_digits_split(size)
        names = [str(i) for i in range(10)]
    elif name == "synthetic":
        xtr, ytr, xte, yte, pre = make_synthetic(size, classes=classes or 10)
    elif name == "fashion-mnist":
        xtr, ytr, xte, yte, pre = load_fashion_mnist(data_dir)
        names = list(FASHION_MNIST_CLASSES)
    elif name == "mnist":
        xtr, ytr, xte, yte, pre = load_mnist(data_dir)
        names = [str(i) for i in range(10)]
    else:
        xtr, ytr, xte, yte, pre = load_cifar10(data_dir)
        names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                 "ship", "truck"]
    vs = default_val_split(len(ytr)) if val_split is None else val_split
    xtr, ytr, xva, yva = _holdout(xtr, ytr, vs)
    aug = DEFAULT_AUGMENT[name] if augment == "default" else augment
    pre = dict(pre, val_split=f"the last {vs} training images", augment=aug)
    return InMemoryDataset(xtr, ytr, xva, yva, classes or 10, name, augment=aug,
                           preprocess=pre, test_x=xte, test_y=yte, class_names=names)
