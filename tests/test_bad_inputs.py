"""Hostile and mistaken inputs at every entry point: each gets a clear error,
never a crash, a hang or silent garbage.

Entry points and the contract checked here:

* ``bmx.engine.Model(bytes | path)`` and ``bmx.engine.validate_model(bytes)``: a bad file
  (empty, truncated, corrupted, wrong identifier or format version, not a model at all)
  raises ``bmx.engine.ModelError`` (a ``ValueError``) with a message; a bad path raises the
  matching ``OSError`` (``FileNotFoundError``, ``IsADirectoryError``, ``PermissionError``);
  a path that is not a regular file (a FIFO) is refused rather than blocking forever.
* ``Model.predict(x)``: wrong shape, rank, dtype or layout (NHWC given for NCHW), an empty
  batch or a non-array raise ``ValueError`` naming what was expected.
  **NaN/Inf policy** (the runtime's, ``bmx/engine.h``): an input holding NaN or +-Inf is
  rejected with ``ValueError`` giving the flat index of the first one, because a sign
  activation would silently turn NaN into +1; huge finite values and -0.0 are valid.
  Non-contiguous and Fortran-ordered arrays are accepted (copied) and give the same logits.
* ``bmx.get_model`` / ``bmx.convert``: unknown names and bad arguments raise ``ValueError``
  (``ConversionError``) naming the problem.
* CLIs ``bmx-convert``, ``bmx-train``, ``bmx-bench``: unknown model names, contradictory or
  out-of-range flags, missing files exit with code 2 and exactly one line on stderr (no
  traceback), within a timeout.
"""
import concurrent.futures
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import bmx
from bmx import engine

HW = 16
SEED_CLASSES = 10


@pytest.fixture(scope="module")
def model_bytes():
    """A small converted zoo model (ResNetE blocks, thumbnail stem, 16x16, 10 classes)."""
    import mxnet as mx
    from bmx import model_zoo
    mx.random.seed(3)
    net = model_zoo.resnete_flex(layers=(1, 1), channels=(8, 16), classes=SEED_CLASSES, stem="thumbnail")
    net.initialize(model_zoo.default_initializer())
    net(mx.nd.zeros((1, 3, HW, HW)))
    rng = np.random.default_rng(5)
    for name, p in net.collect_params().items():
        if name.endswith("running_mean"):
            p.set_data(rng.normal(0, 0.5, p.shape).astype(np.float32))
        elif name.endswith("running_var"):
            p.set_data(rng.uniform(0.5, 2.0, p.shape).astype(np.float32))
    return bmx.convert(net, input_shape=(1, 3, HW, HW))


@pytest.fixture(scope="module")
def model(model_bytes):
    return engine.Model(model_bytes)


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(11).standard_normal((2, 3, HW, HW)).astype(np.float32)


def _version_offset(data):
    """Byte offset of Model.version (field 0 of the root table) in a FlatBuffer."""
    root = struct.unpack_from("<I", data, 0)[0]
    vtable = root - struct.unpack_from("<i", data, root)[0]
    field = struct.unpack_from("<H", data, vtable + 4)[0]
    assert field, "version field absent"
    return root + field


def _with_version(data, version):
    b = bytearray(data)
    struct.pack_into("<I", b, _version_offset(data), version)
    from bmx.fb.Model import Model as FbModel
    assert FbModel.GetRootAs(bytes(b), 0).Version() == version
    return bytes(b)


# ---------------------------------------------------------------------------------------
# Model files: bytes and paths

BAD_FILES = {
    # name: (make(bytes) -> bytes, message regex)
    "empty": (lambda d: b"", r"empty"),
    "four_bytes": (lambda d: d[:4], r"too small|truncated"),
    "truncated_header": (lambda d: d[:16], r"truncated|corrupted|not a bmx"),
    "truncated_half": (lambda d: d[: len(d) // 2 // 4 * 4], r"truncated|corrupted"),
    "truncated_last_word": (lambda d: d[:-4], r"truncated|corrupted"),
    "truncated_odd": (lambda d: d[:-1], r"truncated"),
    "wrong_identifier": (lambda d: d[:4] + b"ONNX" + d[8:], r"not a bmx model"),
    "zeroed_body": (lambda d: d[:8] + bytes(len(d) - 8), r"corrupted|not a bmx|version"),
    "text_file": (lambda d: b"resnet18 model weights\n" * 8, r"not a bmx model"),
    "text_file_odd_size": (lambda d: b"resnet18 model weights\n" * 7 + b"!", r"not a bmx model"),
    "random_bytes": (lambda d: np.random.default_rng(0).bytes(4096), r"not a bmx model|corrupted"),
    "version_0": (lambda d: _with_version(d, 0), r"version 0"),
    "version_future": (lambda d: _with_version(d, engine.FORMAT_VERSION + 1),
                       rf"unsupported model format version {engine.FORMAT_VERSION + 1} "
                       rf"\(this bmx reads versions {engine.MIN_FORMAT_VERSION} to {engine.FORMAT_VERSION}\)"),
    "version_max": (lambda d: _with_version(d, 0xFFFFFFFF), r"version 4294967295"),
    # Data appended to a valid file: the verifier alone accepts it (FlatBuffers has no
    # length field); the loader compares the file size with what the objects reach.
    "appended_word": (lambda d: d + b"JUNK", r"4 bytes of trailing data"),
    "appended_zeros": (lambda d: d + bytes(16), r"16 bytes of trailing data"),
    "appended_copy": (lambda d: d + d, r"trailing data"),
}


@pytest.mark.parametrize("case", sorted(BAD_FILES))
@pytest.mark.parametrize("source", ["bytes", "path", "validate"])
def test_bad_model_file(case, source, model_bytes, tmp_path):
    make, pattern = BAD_FILES[case]
    data = make(model_bytes)
    with pytest.raises(engine.ModelError, match=pattern) as ei:
        if source == "bytes":
            engine.Model(data)
        elif source == "path":
            p = tmp_path / f"{case}.bmx"
            p.write_bytes(data)
            engine.Model(str(p))
        else:
            engine.validate_model(data)
    assert isinstance(ei.value, ValueError)
    assert "\n" not in str(ei.value)


def test_every_version_read_loads(model_bytes, model, image):
    """A file labelled with any version this bmx reads loads and predicts the same: the
    converter wrote this model (no version-2 ops) as the oldest version."""
    from bmx.modelfile import read_model
    assert read_model(model_bytes)["version"] == engine.MIN_FORMAT_VERSION
    ref = model.predict(image)
    for version in range(engine.MIN_FORMAT_VERSION, engine.FORMAT_VERSION + 1):
        data = _with_version(model_bytes, version)
        engine.validate_model(data)
        np.testing.assert_array_equal(engine.Model(data).predict(image), ref, err_msg=f"version {version}")


def test_bad_model_bytes_types(model_bytes):
    # bytearray and memoryview are accepted like bytes; a bad file in them is still rejected.
    assert engine.Model(bytearray(model_bytes)).num_classes == SEED_CLASSES
    assert engine.Model(memoryview(model_bytes)).num_classes == SEED_CLASSES
    with pytest.raises(engine.ModelError, match="truncated"):
        engine.Model(bytearray(model_bytes[:-1]))
    with pytest.raises(engine.ModelError, match="truncated|corrupted"):
        engine.Model(memoryview(model_bytes)[:-4])


def test_mxnet_params_file_is_not_a_model(tmp_path):
    import mxnet as mx
    p = tmp_path / "weights.params"
    mx.nd.save(str(p), {"w": mx.nd.ones((4, 4))})
    with pytest.raises(engine.ModelError, match="not a bmx model"):
        engine.Model(str(p))


def test_every_truncation_is_rejected(model_bytes):
    n = len(model_bytes)
    lengths = sorted(set(range(0, 64)) | set(range(0, n, max(1, n // 97))) | {n - 8, n - 4, n - 1})
    for k in lengths:
        with pytest.raises(engine.ModelError):
            engine.Model(model_bytes[:k])


def test_bit_flips_error_or_run(model_bytes, image):
    """Single bit flips at ~400 offsets spread over the file (header, tables, vectors,
    weights): each either raises ModelError or loads a model that predicts the right shape
    (a flipped weight bit is a valid, different model)."""
    n = len(model_bytes)
    rng = np.random.default_rng(1)
    offsets = sorted(set(range(0, 64)) | set(rng.integers(0, n, 340).tolist()))
    outcomes = {"rejected": 0, "loaded": 0}
    for off in offsets:
        b = bytearray(model_bytes)
        b[off] ^= 1 << int(rng.integers(0, 8))
        try:
            m = engine.Model(bytes(b))
        except engine.ModelError as e:
            assert str(e), f"empty message for a flip at {off}"
            outcomes["rejected"] += 1
            continue
        out = m.predict(image)
        assert out.shape == (2, m.num_classes)
        outcomes["loaded"] += 1
    print(f"bit flips at {len(offsets)} offsets: {outcomes}")
    assert outcomes["rejected"] > 0 and outcomes["loaded"] > 0


def test_nonexistent_path(tmp_path):
    with pytest.raises(FileNotFoundError):
        engine.Model(str(tmp_path / "missing.bmx"))
    with pytest.raises(FileNotFoundError):
        engine.Model(tmp_path / "missing.bmx")  # os.PathLike


def test_directory_path(tmp_path):
    with pytest.raises(IsADirectoryError):
        engine.Model(str(tmp_path))


def test_path_through_a_file(model_bytes, tmp_path):
    f = tmp_path / "model.bmx"
    f.write_bytes(model_bytes)
    with pytest.raises(NotADirectoryError):
        engine.Model(str(f / "inner.bmx"))


_UNREADABLE_CHECK = textwrap.dedent("""
    import sys
    from bmx import engine
    try:
        engine.Model(sys.argv[1])
    except PermissionError as e:
        print("PermissionError", e)
    except BaseException as e:
        print("other", type(e).__name__, e)
    else:
        print("loaded")
""")


def test_unreadable_path(model_bytes, tmp_path):
    """chmod 000. Root bypasses file permissions (CAP_DAC_OVERRIDE), so as root the check
    runs in a child whose capability bounding set lacks the DAC overrides (setpriv): the
    same PermissionError a normal user gets."""
    f = tmp_path / "model.bmx"
    f.write_bytes(model_bytes)
    f.chmod(0)
    try:
        if os.geteuid() != 0:
            with pytest.raises(PermissionError):
                engine.Model(str(f))
            return
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root without setpriv (util-linux): cannot drop "
                        "CAP_DAC_OVERRIDE, so an unreadable file cannot be made")
        p = subprocess.run([setpriv, "--bounding-set", "-dac_override,-dac_read_search",
                            sys.executable, "-c", _UNREADABLE_CHECK, str(f)],
                           capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert p.stdout.startswith("PermissionError"), p.stdout + p.stderr
    finally:
        f.chmod(stat.S_IRUSR | stat.S_IWUSR)


def test_fifo_path_does_not_hang(tmp_path):
    """A FIFO (or any non-regular file) as model path must fail, not block in open()."""
    fifo = tmp_path / "model.bmx"
    os.mkfifo(fifo)
    code = ("import sys\nfrom bmx import engine\ntry:\n    engine.Model(sys.argv[1])\n"
            "except (OSError, ValueError) as e:\n    print(type(e).__name__, e)\n")
    try:
        p = subprocess.run([sys.executable, "-c", code, str(fifo)], capture_output=True,
                           text=True, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail("bmx.engine.Model(<fifo>) blocked for 30 s")
    assert p.returncode == 0, p.stderr
    assert re.search(r"not a regular file", p.stdout), p.stdout


@pytest.mark.parametrize("arg, exc", [
    (123, TypeError), (None, TypeError), ([1, 2, 3], TypeError), (1.5, TypeError),
])
def test_model_argument_type(arg, exc):
    with pytest.raises(exc, match="path or bytes"):
        engine.Model(arg)


@pytest.mark.parametrize("threads, exc", [
    (0, ValueError), (-3, ValueError), ("2", TypeError), (2.0, TypeError), (True, TypeError),
    (10 ** 6, ValueError), (2 ** 31, ValueError),
])
def test_model_num_threads(threads, exc, model_bytes):
    with pytest.raises(exc, match="num_threads") as ei:
        engine.Model(model_bytes, num_threads=threads)
    assert len(str(ei.value)) < 300, "the message must not dump the model"


@pytest.mark.parametrize("bad", [0, -1, "4", 1.5, None, 10 ** 6, 2 ** 31])
def test_set_num_threads_bad(bad, model_bytes):
    m = engine.Model(model_bytes)
    with pytest.raises(ValueError, match="num_threads") as ei:
        m.num_threads = bad
    assert len(str(ei.value)) < 300
    assert m.num_threads == 1


# ---------------------------------------------------------------------------------------
# predict() inputs

BAD_INPUTS = {
    # name: (make(model) -> x, message regex)
    "float64": (lambda m: np.zeros(m.input_shape, np.float64), r"float32"),
    "float16": (lambda m: np.zeros(m.input_shape, np.float16), r"float32"),
    "int32": (lambda m: np.zeros(m.input_shape, np.int32), r"float32"),
    "uint8": (lambda m: np.zeros(m.input_shape, np.uint8), r"float32"),
    "bool": (lambda m: np.zeros(m.input_shape, bool), r"float32"),
    "complex64": (lambda m: np.zeros(m.input_shape, np.complex64), r"float32"),
    "object": (lambda m: np.zeros(m.input_shape, object), r"float32"),
    "list": (lambda m: np.zeros(m.input_shape, np.float32).tolist(), r"numpy"),
    "scalar": (lambda m: np.float32(1.0), r"numpy|shape"),
    "0d": (lambda m: np.array(1.0, np.float32), r"shape"),
    "3d_no_batch": (lambda m: np.zeros(m.input_shape[1:], np.float32), r"shape"),
    "5d": (lambda m: np.zeros((1,) + m.input_shape, np.float32), r"shape"),
    "flat": (lambda m: np.zeros(int(np.prod(m.input_shape)), np.float32), r"shape"),
    "nhwc_layout": (lambda m: np.zeros((1, HW, HW, 3), np.float32), r"shape \(N, 3, 16, 16\)"),
    "wrong_channels": (lambda m: np.zeros((1, 4, HW, HW), np.float32), r"shape"),
    "wrong_height": (lambda m: np.zeros((1, 3, HW + 1, HW), np.float32), r"shape"),
    "wrong_width": (lambda m: np.zeros((1, 3, HW, HW // 2), np.float32), r"shape"),
    "empty_batch": (lambda m: np.zeros((0, 3, HW, HW), np.float32), r"empty batch"),
    "nan_first": (lambda m: _poison(m, 0, np.nan), r"NaN or Inf .*index 0\b"),
    "nan_middle": (lambda m: _poison(m, 1000, np.nan), r"NaN or Inf .*index 1000\b"),
    "inf_last": (lambda m: _poison(m, -1, np.inf), r"NaN or Inf .*index 1535\b"),
    "neg_inf": (lambda m: _poison(m, 77, -np.inf), r"NaN or Inf .*index 77\b"),
    "nan_second_image": (lambda m: _poison(m, 768 + 5, np.nan, batch=2), r"NaN or Inf .*index 773\b"),
}


def _poison(m, index, value, batch=2):
    x = np.zeros((batch,) + m.input_shape[1:], np.float32)
    x.reshape(-1)[index] = value
    return x


@pytest.mark.parametrize("case", sorted(BAD_INPUTS))
def test_bad_predict_input(case, model):
    make, pattern = BAD_INPUTS[case]
    with pytest.raises(ValueError, match=pattern):
        model.predict(make(model))


@pytest.mark.parametrize("case", ["float64", "int32", "3d_no_batch", "5d", "nhwc_layout", "empty_batch",
                                  "nan_first", "inf_last"])
def test_bad_predict_input_compiled_binding(case, model):
    """The compiled binding checks on its own too (C++ users of bmx._engine, and any future
    wrapper that forgets a check)."""
    make, _ = BAD_INPUTS[case]
    with pytest.raises(ValueError):
        model._m.predict(make(model))


def test_compiled_binding_rejects_non_contiguous(model):
    x = np.zeros((1, 3, HW, 2 * HW), np.float32)[..., ::2]
    with pytest.raises(ValueError, match="contiguous"):
        model._m.predict(x)


def test_predict_accepts_any_memory_layout(model, image):
    """Not bad input: strided and Fortran-ordered arrays give the contiguous result."""
    ref = model.predict(np.ascontiguousarray(image))
    big = np.zeros((2, 3, HW, 2 * HW), np.float32)
    big[..., ::2] = image
    np.testing.assert_array_equal(model.predict(big[..., ::2]), ref)
    np.testing.assert_array_equal(model.predict(np.asfortranarray(image)), ref)
    np.testing.assert_array_equal(model.predict(image[::-1][::-1]), ref)


def test_extreme_finite_inputs_run(model):
    """Huge finite values and -0.0 are valid input: no error, the right shape; -0.0 gives
    exactly the logits of +0.0 (sign(0) = +1 for both)."""
    x = np.zeros((3,) + model.input_shape[1:], np.float32)
    x[0] = np.finfo(np.float32).max
    x[1] = -np.finfo(np.float32).max
    x[2] = np.finfo(np.float32).tiny
    out = model.predict(x)
    assert out.shape == (3, SEED_CLASSES)
    zero = model.predict(np.zeros((1,) + model.input_shape[1:], np.float32))
    negzero = model.predict(np.full((1,) + model.input_shape[1:], -0.0, np.float32))
    np.testing.assert_array_equal(zero, negzero)


def test_model_still_works_after_bad_inputs(model, image):
    ref = model.predict(image)
    for case in sorted(BAD_INPUTS):
        with pytest.raises(ValueError):
            model.predict(BAD_INPUTS[case][0](model))
    np.testing.assert_array_equal(model.predict(image), ref)


# ---------------------------------------------------------------------------------------
# Python APIs: model names, converter arguments

@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(name="nosuchnet"), ValueError, r"unknown model 'nosuchnet'; valid names: .*binarydensenet28"),
    (dict(name=""), ValueError, r"unknown model"),
    (dict(name="resnet18_v1"), ValueError, r"unknown model"),
    (dict(name="resnete18", stem="bogus"), ValueError, r"unknown stem 'bogus'"),
    (dict(name="resnete18", bits=0), ValueError, r"bits"),
    (dict(name="resnete18", pretrained="/nonexistent/x.params"), FileNotFoundError, r"does not exist"),
])
def test_get_model_bad(kwargs, exc, pattern):
    with pytest.raises(exc, match=pattern):
        bmx.get_model(kwargs.pop("name"), **kwargs)


@pytest.mark.parametrize("classes", [0, -1])
def test_get_model_bad_classes(classes):
    with pytest.raises(ValueError, match="classes"):
        bmx.get_model("resnete18", classes=classes)


@pytest.fixture(scope="module")
def small_net():
    import mxnet as mx
    from bmx import model_zoo
    net = model_zoo.resnete_flex(layers=(1, 1), channels=(8, 16), classes=SEED_CLASSES, stem="thumbnail")
    net.initialize(model_zoo.default_initializer())
    net(mx.nd.zeros((1, 3, HW, HW)))
    return net


@pytest.mark.parametrize("kwargs, exc, pattern", [
    (dict(input_shape=(1, 3, HW)), ValueError, r"input_shape"),
    (dict(input_shape=(1, 3, 0, HW)), ValueError, r"input_shape"),
    (dict(input_shape="abc"), ValueError, r"input_shape"),
    (dict(input_shape=(1, 3, HW, HW), symbol_file="x-symbol.json"), ValueError, r"not both"),
    (dict(input_shape=(1, 3, HW, HW), path="/nonexistent-dir/x.bmx"), FileNotFoundError,
     r"output directory does not exist: '/nonexistent-dir'"),
])
def test_convert_bad(kwargs, exc, pattern, small_net):
    with pytest.raises(exc, match=pattern):
        bmx.convert(small_net, **kwargs)


def test_convert_nothing():
    with pytest.raises(ValueError, match="give a network"):
        bmx.convert(None, input_shape=(1, 3, HW, HW))


# ---------------------------------------------------------------------------------------
# CLIs: exit code 2, one line on stderr, no traceback, no hang

CLI_TIMEOUT = 300


def _cli_cases(tmp):
    params = os.path.join(tmp, "weights.params")
    notparams = os.path.join(tmp, "model.bmx")
    sym = os.path.join(tmp, "net-symbol.json")
    empty_sym = os.path.join(tmp, "empty-symbol.json")
    cycle_sym = os.path.join(tmp, "cycle-symbol.json")
    out = os.path.join(tmp, "out.bmx")
    sd = os.path.join(tmp, "run")
    return {
        # bmx-convert
        "convert_unknown_model": (["bmx-convert", "nosuchnet", "-o", out], r"unknown model 'nosuchnet'"),
        "convert_name_and_symbol": (["bmx-convert", "resnete18", "--symbol", sym, "-o", out], r"not both"),
        "convert_symbol_without_params": (["bmx-convert", "--symbol", sym, "-o", out], r"needs --params"),
        "convert_symbol_with_classes": (["bmx-convert", "--symbol", sym, "--params", params, "--classes", "10",
                                         "-o", out], r"--classes and --stem apply to zoo models"),
        "convert_symbol_empty": (["bmx-convert", "--symbol", empty_sym, "--params", params, "-o", out],
                                 r"symbol file .* is empty"),
        "convert_symbol_cycle": (["bmx-convert", "--symbol", cycle_sym, "--params", params, "-o", out],
                                 r"node 0 'a' .*node 1"),
        "convert_nothing": (["bmx-convert", "-o", out], r"model zoo name or --symbol"),
        "convert_no_output": (["bmx-convert", "resnete18"], r"-o"),
        "convert_output_dir_missing": (["bmx-convert", "resnete18", "-o", os.path.join(tmp, "no", "x.bmx")],
                                       r"does not exist"),
        "convert_bad_shape": (["bmx-convert", "resnete18", "--input-shape", "1,3,x", "-o", out],
                              r"--input-shape"),
        "convert_shape_rank": (["bmx-convert", "resnete18", "--input-shape", "3,224,224", "-o", out],
                               r"--input-shape"),
        "convert_classes_zero": (["bmx-convert", "resnete18", "--classes", "0", "-o", out], r"--classes"),
        "convert_params_missing": (["bmx-convert", "resnete18", "--params", params + ".nope", "-o", out],
                                   r"not found"),
        "convert_params_not_params": (["bmx-convert", "resnete18", "--params", notparams, "-o", out],
                                      r"cannot load"),
        "convert_bad_stem": (["bmx-convert", "resnete18", "--stem", "bogus", "-o", out], r"stem"),
        "convert_unknown_flag": (["bmx-convert", "resnete18", "--bogus", "-o", out], r"unrecognized"),
        # bmx-train
        "train_unknown_model": (["bmx-train", "--model", "nosuchnet", "--save-dir", sd], r"unknown model"),
        "train_bad_spec": (["bmx-train", "--model", "binarydensenet_flex:block_config=", "--save-dir", sd],
                           r"bad model spec|cannot build"),
        "train_step_without_steps": (["bmx-train", "--lr-mode", "step", "--save-dir", sd], r"--lr-steps"),
        "train_steps_with_cosine": (["bmx-train", "--lr-steps", "2,3", "--save-dir", sd], r"--lr-steps"),
        "train_steps_past_epochs": (["bmx-train", "--lr-mode", "step", "--lr-steps", "5", "--epochs", "3",
                                     "--save-dir", sd], r"--lr-steps"),
        "train_teacher_without_params": (["bmx-train", "--teacher", "resnete18", "--save-dir", sd],
                                         r"--teacher"),
        "train_teacher_params_without_teacher": (["bmx-train", "--teacher-params", params, "--save-dir", sd],
                                                 r"--teacher"),
        "train_builtin_with_data_dir": (["bmx-train", "--dataset", "digits", "--data-dir", tmp, "--save-dir", sd],
                                        r"--data-dir"),
        "train_warmup_ge_epochs": (["bmx-train", "--epochs", "2", "--warmup-epochs", "2", "--save-dir", sd],
                                   r"--warmup-epochs"),
        "train_epochs_zero": (["bmx-train", "--epochs", "0", "--save-dir", sd], r"--epochs"),
        "train_lr_nan": (["bmx-train", "--lr", "nan", "--save-dir", sd], r"--lr"),
        "train_lr_negative": (["bmx-train", "--lr", "-0.1", "--save-dir", sd], r"--lr"),
        "train_bad_dataset": (["bmx-train", "--dataset", "svhn", "--save-dir", sd], r"--dataset"),
        "train_missing_data": (["bmx-train", "--dataset", "mnist", "--data-dir", os.path.join(tmp, "nodata"),
                                "--save-dir", sd], r"MNIST"),
        "train_resume_nothing": (["bmx-train", "--resume", "--save-dir", os.path.join(tmp, "empty-run")],
                                 r"--resume: no checkpoint"),
        "train_dist_without_launcher": (["bmx-train", "--kvstore", "dist_sync", "--save-dir", sd],
                                        r"launcher"),
        "train_bits_too_many": (["bmx-train", "--bits", "64", "--save-dir", sd], r"--bits"),
        # bmx-bench
        "bench_no_command": (["bmx-bench"], r"COMMAND|command"),
        "bench_unknown_command": (["bmx-bench", "nosuchcmd"], r"nosuchcmd"),
        "bench_threads_zero": (["bmx-bench", "gemm", "--threads", "0", "--layers", "0", "--repeat", "1"],
                               r"--threads"),
        "bench_repeat_zero": (["bmx-bench", "gemm", "--repeat", "0", "--layers", "0"], r"--repeat"),
        "bench_unknown_kernel": (["bmx-bench", "gemm", "--kernels", "nosuch", "--layers", "0", "--repeat", "1"],
                                 r"nosuch"),
        "bench_layer_out_of_range": (["bmx-bench", "gemm", "--layers", "99", "--repeat", "1"], r"--layers"),
        "bench_bad_number": (["bmx-bench", "gemm", "--threads", "two"], r"--threads"),
        "bench_image_zero": (["bmx-bench", "gemm", "--image", "0", "--layers", "0", "--repeat", "1"],
                             r"--image"),
    }


def _run_cli(argv, tmp):
    exe = os.path.join(os.path.dirname(sys.executable), argv[0])
    if not os.path.exists(exe):
        exe = shutil.which(argv[0]) or exe
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    try:
        return subprocess.run([exe] + argv[1:], capture_output=True, text=True, timeout=CLI_TIMEOUT,
                              cwd=tmp, env=env)
    except subprocess.TimeoutExpired as e:
        return e


@pytest.fixture(scope="module")
def cli_results(tmp_path_factory):
    """Every CLI case run once, four at a time (each is mostly interpreter start-up)."""
    import mxnet as mx
    tmp = str(tmp_path_factory.mktemp("cli"))
    mx.nd.save(os.path.join(tmp, "weights.params"), {"w": mx.nd.ones((2,))})
    with open(os.path.join(tmp, "model.bmx"), "wb") as f:
        f.write(b"BMX1 not really")
    with open(os.path.join(tmp, "net-symbol.json"), "w") as f:
        f.write("{}")
    open(os.path.join(tmp, "empty-symbol.json"), "w").close()
    with open(os.path.join(tmp, "cycle-symbol.json"), "w") as f:
        # two nodes reading each other: not a graph MXNet's net.export can write
        json.dump({"nodes": [{"op": "Activation", "name": "a", "attrs": {"act_type": "relu"}, "inputs": [[1, 0, 0]]},
                             {"op": "Activation", "name": "b", "attrs": {"act_type": "relu"}, "inputs": [[0, 0, 0]]}],
                   "arg_nodes": [], "node_row_ptr": [0, 1, 2], "heads": [[1, 0, 0]],
                   "attrs": {"mxnet_version": ["int", 10901]}}, f)
    cases = _cli_cases(tmp)
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        futs = {k: ex.submit(_run_cli, argv, tmp) for k, (argv, _) in cases.items()}
        return {k: (cases[k], f.result()) for k, f in futs.items()}


CLI_CASE_NAMES = sorted(_cli_cases("/tmp"))


@pytest.mark.slow  # ~40 interpreter start-ups (MXNet import): ~1 min on 2 cores
@pytest.mark.parametrize("case", CLI_CASE_NAMES)
def test_cli_bad_usage(case, cli_results):
    (argv, pattern), p = cli_results[case]
    if isinstance(p, subprocess.TimeoutExpired):
        pytest.fail(f"{' '.join(argv)} did not finish within {CLI_TIMEOUT} s")
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in p.stderr, p.stderr
    assert p.returncode == 2, f"exit {p.returncode}; stderr:\n{p.stderr}"
    assert len(lines) == 1, f"expected one line on stderr, got:\n{p.stderr}"
    assert lines[0].startswith(argv[0] + ":"), lines[0]
    assert re.search(pattern, lines[0]), lines[0]
