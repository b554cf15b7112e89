"""bmx.engine: the C++ xnor-popcount inference engine (re-exports ``bmx._engine``).

Bethge et al., "BMXNet 2" (2019): bit-packed binary layers computed with xor and
popcount. This thin module documents and validates the compiled functions; the bit
convention is the one of :mod:`bmx.convention` (bit 1 iff value < 0, LSB first, tail
bits 0, -1 padding for binary convolutions).

Kernels
-------
One kernel list drives dispatch, tests and benchmarks (:func:`list_kernels`): a naive
``bgemm_1x1__reference`` (the source of truth), a portable ``bgemm_4x4__scalar``, and
per-architecture kernels (``bgemm_2x4__avx2``, ``bgemm_2x8__avx2``, ``bgemm_4x4__avx512``,
``bgemm_8x16__avx512``, ``bgemm_2x4__neon``) chosen at run time by CPU feature (highest
priority available wins). ``BMX_DISABLE_SIMD=avx512,avx2,neon`` in the environment (read
once, at import of the compiled module) hides features from the dispatcher:
``BMX_DISABLE_SIMD=avx512`` gives an AVX-512 machine the kernels of an AVX2-only CPU
(AMD Zen 3, Intel before Ice Lake).

A second list (:func:`list_kbit_kernels`) holds the k-bit bit-plane GEMM of
:func:`kbit_gemm` (``kbgemm_1x1__reference``, ``kbgemm_2x4__scalar`` and per-architecture
kernels), dispatched the same way.
"""
import numpy as np

from . import _engine

__all__ = ["pack_bits", "binary_gemm", "binary_conv2d", "pack_filters", "PackedFilters", "time_binary_gemm",
           "time_binary_conv2d", "list_kernels", "auto_kernel", "cpu_features", "sign_pack",
           "list_sign_pack_kernels", "kbit_gemm", "list_kbit_kernels", "WORD_BITS"]

__version__ = _engine.__version__
WORD_BITS = _engine.WORD_BITS


def pack_bits(x, axis=-1, num_threads=1):
    """Rastegari et al., XNOR-Net (2016): pack +-1 values into 64-bit words along an axis.

    Parameters
    ----------
    x : numpy.ndarray
        float32 or int8 array of any rank >= 1.
    axis : int, optional
        Axis to pack (default: the last one).
    num_threads : int, optional
        Threads used for large arrays.

    Returns
    -------
    numpy.ndarray
        uint64 array with ``axis`` moved last and of length ``ceil(x.shape[axis] / 64)``:
        bit ``i % 64`` of word ``i // 64`` is 1 iff ``x[..., i] < 0`` (NaN, 0 and -0.0
        give 0); bits past the axis length are 0.

    Raises
    ------
    ValueError
        For another dtype, a 0-d array or an out-of-range axis.
    """
    if not isinstance(x, np.ndarray):
        raise ValueError(f"pack_bits: expected a numpy array, got {type(x).__name__}")
    if x.ndim == 0:
        raise ValueError("pack_bits: expected an array with at least one dimension")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"pack_bits: axis {axis} out of range for a {x.ndim}-D array")
    if x.dtype not in (np.float32, np.int8):
        raise ValueError(f"pack_bits: expected float32 or int8, got {x.dtype} (use x.astype(np.float32))")
    return _engine.pack_last_axis(np.ascontiguousarray(np.moveaxis(x, axis, -1)), int(num_threads))


def binary_gemm(a_bits, b_bits, k, num_threads=1, kernel="auto"):
    """Rastegari et al., XNOR-Net (2016): binary GEMM by xor and popcount.

    Computes ``C[m, n] = k - 2 * popcount(a_bits[m] ^ b_bits[n])``, the dot product of
    the +-1 vectors that the packed rows hold.

    Parameters
    ----------
    a_bits : numpy.ndarray
        uint64 array of shape (M, W), rows packed by :func:`pack_bits`.
    b_bits : numpy.ndarray
        uint64 array of shape (N, W).
    k : int
        True bit count per row; ``W`` must equal ``ceil(k / 64)`` and the bits past ``k``
        must be 0.
    num_threads : int, optional
        Worker threads (the calling thread counts as one).
    kernel : str, optional
        ``'auto'`` (best available) or a name from :func:`list_kernels`.

    Returns
    -------
    numpy.ndarray
        int32 array of shape (M, N), C-contiguous and 64-byte aligned (threads split it
        on cache-line boundaries).

    Raises
    ------
    ValueError
        Wrong dtype, rank, word count, stray tail bits, unknown or unavailable kernel.
    """
    # Exact types take the fast path: a 7x7 layer's kernel runs in ~4 us, so the checks'
    # cost shows in every call (the extension validates shapes, dtypes and values anyway).
    if not (type(a_bits) is np.ndarray and type(b_bits) is np.ndarray and type(k) is int
            and type(num_threads) is int and type(kernel) is str):
        a_bits, b_bits = _as_array(a_bits, "a_bits"), _as_array(b_bits, "b_bits")
        k, num_threads, kernel = _as_int(k, "k"), _as_int(num_threads, "num_threads"), str(kernel)
    return _engine.binary_gemm(a_bits, b_bits, k, num_threads, kernel)


def binary_conv2d(x, weights, stride=1, padding=0, dilation=1, in_channels=None, num_threads=1,
                  kernel="auto"):
    """Bethge et al., BMXNet 2 (2019): binary 2-D convolution with -1 padding (NHWC).

    Parameters
    ----------
    x : numpy.ndarray
        Input of shape (N, H, W, C): float32 or int8 values (packed inside the call, so
        packing is part of its cost: bit 1 iff value < 0), or uint64 words of shape
        (N, H, W, ceil(C / 64)) already packed (then ``in_channels`` gives C unless the
        weights are unpacked).
    weights : numpy.ndarray or PackedFilters
        Filters of shape (C_out, KH, KW, C_in) (OHWI), float32/int8 values or uint64
        words of shape (C_out, KH, KW, ceil(C_in / 64)); or :func:`pack_filters`' result,
        which skips the per-call re-arrangement of the filters for the kernel (as a
        loaded :class:`Model` does).
    stride, padding, dilation : int or (int, int), optional
        Padding adds ``padding`` positions of value -1 on each side (a binary conv pads
        with -1, which is free after packing).
    in_channels : int, optional
        Input channel count; required when both ``x`` and ``weights`` are packed.
    num_threads : int, optional
        Worker threads (the calling thread counts as one).
    kernel : str, optional
        bgemm kernel: ``'auto'`` or a name from :func:`list_kernels`.

    Returns
    -------
    numpy.ndarray
        int32 array of shape (N, OH, OW, C_out) holding the +-1 dot products
        ``K - 2 * popcount`` with ``K = C_in * KH * KW`` (BMXNet's offset output is
        ``(out + K) // 2``); C-contiguous and 64-byte aligned.

    Raises
    ------
    ValueError
        Wrong dtype, rank, channel/word count, geometry or kernel name.
    """
    if not (type(x) is np.ndarray and type(weights) in (np.ndarray, PackedFilters) and type(num_threads) is int
            and type(kernel) is str and (in_channels is None or type(in_channels) is int)):
        x, weights = _as_array(x, "x"), _as_weights(weights)
        in_channels = None if in_channels is None else _as_int(in_channels, "in_channels")
        num_threads, kernel = _as_int(num_threads, "num_threads"), str(kernel)
    return _engine.binary_conv2d(x, weights, stride, padding, dilation, in_channels, num_threads, kernel)


PackedFilters = _engine.PackedFilters


def pack_filters(weights, in_channels=None, kernel="auto"):
    """Bethge et al., BMXNet 2 (2019): binary conv filters packed once, for repeated calls.

    :func:`binary_conv2d` packs float/int8 filters and re-arranges packed ones into its
    kernel's panel layout on every call; for filters used many times (a layer applied to
    a stream of inputs) do it once here, as a converted model does at load.

    Parameters
    ----------
    weights : numpy.ndarray
        (C_out, KH, KW, C_in) float32/int8 values, or uint64 words of shape
        (C_out, KH, KW, ceil(C_in / 64)) (then ``in_channels`` is required).
    in_channels : int, optional
        C_in (checked against float/int8 weights).
    kernel : str, optional
        bgemm kernel the layout is for: ``'auto'`` or a name from :func:`list_kernels`;
        :func:`binary_conv2d` then uses that kernel.

    Returns
    -------
    PackedFilters
        Opaque; ``.shape`` is (C_out, KH, KW, C_in), ``.kernel`` the kernel name and
        ``.words`` the packed words.

    Raises
    ------
    ValueError
        Wrong rank, dtype, word count, stray tail bits, or unknown kernel.
    """
    if not isinstance(weights, np.ndarray):
        raise ValueError(f"weights must be a numpy array, got {type(weights).__name__}")
    return _engine.pack_filters(weights, None if in_channels is None else _as_int(in_channels, "in_channels"),
                                str(kernel))


def time_binary_gemm(a_bits, b_bits, k, num_threads=1, kernel="auto", min_seconds=0.001, repeat=7,
                     warmup=0.05):
    """Rastegari et al., XNOR-Net (2016): seconds per :func:`binary_gemm` call, timed in C++.

    The same validation and the same kernel call as :func:`binary_gemm`, repeated in a
    loop inside the extension with the GIL released, so the figure is the kernel as a
    network calls it, without Python's per-call cost (about 1 us, which is a tenth of a
    7x7 layer's run time and would hide how the kernel scales with threads).

    Parameters
    ----------
    a_bits, b_bits, k, num_threads, kernel
        As for :func:`binary_gemm`.
    min_seconds : float, optional
        Each sample loops over calls for at least this long.
    repeat : int, optional
        Number of samples.
    warmup : float, optional
        Seconds of calls before the first sample (wakes the thread pool).

    Returns
    -------
    list of float
        ``repeat`` samples of seconds per call.
    """
    return list(_engine.time_binary_gemm(_as_array(a_bits, "a_bits"), _as_array(b_bits, "b_bits"), _as_int(k, "k"),
                                         _as_int(num_threads, "num_threads"), str(kernel), float(min_seconds),
                                         _as_int(repeat, "repeat"), float(warmup)))


def time_binary_conv2d(x, weights, stride=1, padding=0, dilation=1, in_channels=None, num_threads=1,
                       kernel="auto", min_seconds=0.001, repeat=7, warmup=0.05):
    """Bethge et al., BMXNet 2 (2019): seconds per :func:`binary_conv2d` call, timed in C++.

    As :func:`time_binary_gemm`, for :func:`binary_conv2d` with the same arguments; a
    float32 or int8 ``x`` is packed inside every timed call.

    Returns
    -------
    list of float
        ``repeat`` samples of seconds per call.
    """
    return list(_engine.time_binary_conv2d(
        _as_array(x, "x"), _as_weights(weights), stride, padding, dilation,
        None if in_channels is None else _as_int(in_channels, "in_channels"), _as_int(num_threads, "num_threads"),
        str(kernel), float(min_seconds), _as_int(repeat, "repeat"), float(warmup)))


def list_kernels():
    """Bethge et al., BMXNet 2 (2019): the binary GEMM kernels compiled into this build.

    Returns
    -------
    list of (str, bool)
        ``(name, available)`` for every kernel of the list that drives dispatch, tests and
        benchmarks, reference first; ``available`` says whether this CPU runs it.
    """
    return [(str(n), bool(a)) for n, a in _engine.list_kernels()]


def auto_kernel():
    """Bethge et al., BMXNet 2 (2019): name of the kernel that ``kernel='auto'`` uses here."""
    return _engine.auto_kernel()


def cpu_features():
    """Bethge et al., BMXNet 2 (2019): CPU features the dispatcher sees (e.g. ``'popcnt,avx2'``)."""
    return _engine.cpu_features()


def sign_pack(x, scale, shift, kernel="auto"):
    """Bethge et al., BMXNet 2 (2019): the Sign op of a binary layer with its BatchNorm folded.

    Bit ``c`` of row ``p`` is ``scale[c] * x[p, c] + shift[c] < 0`` (float32 multiply, then
    add, each rounded; NaN gives bit 0), packed as :func:`pack_bits` packs the last axis.

    Parameters
    ----------
    x : numpy.ndarray
        ``(pixels, channels)`` float32 rows.
    scale, shift : numpy.ndarray
        ``(channels,)`` float32.
    kernel : str
        ``'auto'`` (the one the runtime uses here) or a name from
        :func:`list_sign_pack_kernels`.

    Returns
    -------
    numpy.ndarray
        ``(pixels, ceil(channels / 64))`` uint64.
    """
    return _engine.sign_pack(_as_array(x, "x"), _as_array(scale, "scale"), _as_array(shift, "shift"), str(kernel))


def list_sign_pack_kernels():
    """Bethge et al., BMXNet 2 (2019): the fused BatchNorm + sign + packing kernels of this build.

    Returns
    -------
    list of (str, bool)
        ``(name, available)``, portable kernel first; the runtime uses the last available one.
    """
    return [(str(n), bool(a)) for n, a in _engine.list_sign_pack_kernels()]


def level_pack(x, scale, shift, planes, kernel="auto"):
    """Zhou et al., DoReFa-Net (2016): the Quantize op, k-bit activations as bit planes.

    Level ``L = round(clip(scale[c] * x[p, c] + shift[c], 0, 1) * (2**planes - 1))``
    (float32 multiply, add, multiply, each rounded; halves rounded up; NaN gives 0); bit
    ``i`` of ``L`` is plane ``i``, packed as :func:`pack_bits` packs the last axis.

    Parameters
    ----------
    x : numpy.ndarray
        ``(pixels, channels)`` float32 rows.
    scale, shift : numpy.ndarray
        ``(channels,)`` float32.
    planes : int
        Bits per level, 1 to 4.
    kernel : str
        ``'auto'`` (the one the runtime uses here) or a name from
        :func:`list_level_pack_kernels`.

    Returns
    -------
    numpy.ndarray
        ``(pixels, planes, ceil(channels / 64))`` uint64.
    """
    return _engine.level_pack(_as_array(x, "x"), _as_array(scale, "scale"), _as_array(shift, "shift"),
                              _as_int(planes, "planes"), str(kernel))


def list_level_pack_kernels():
    """Zhou et al., DoReFa-Net (2016): the k-bit level packing kernels of this build.

    Returns
    -------
    list of (str, bool)
        ``(name, available)``, portable kernel first; the runtime uses the last available one.
    """
    return [(str(n), bool(a)) for n, a in _engine.list_level_pack_kernels()]


def kbit_gemm(a_planes, b_planes, kernel="auto", num_threads=1, k=None, packed=False):
    """Zhou et al., DoReFa-Net (2016) / Bethge et al., BMXNet 2 (2019): k-bit GEMM by bit planes.

    Each element is an unsigned integer ``U = sum_i 2**i * plane_i`` held as bit planes
    (plane ``i`` is bit ``i``, LSB first, packed as :func:`pack_bits` packs an axis); the
    product of a ``pa``-bit and a ``pb``-bit operand is a weighted sum of plane-pair
    popcounts, ``C[m, n] = sum_ij 2**(i + j) * popcount(a_planes[m, i] & b_planes[n, j])``,
    the integer dot product of the rows of ``U_a`` and ``U_b``.

    Parameters
    ----------
    a_planes : numpy.ndarray
        uint64 array of shape (M, pa, W), 1 <= pa <= 4.
    b_planes : numpy.ndarray
        uint64 array of shape (N, pb, W), 1 <= pb <= 4, the same W.
    kernel : str, optional
        ``'auto'`` (best available) or a name from :func:`list_kbit_kernels`.
    num_threads : int, optional
        Worker threads (the calling thread counts as one).
    k : int, optional
        Element count per row; when given, ``W`` must equal ``ceil(k / 64)`` and the bits
        past ``k`` of every plane must be 0 (checked). Without it the tail bits are trusted
        to be 0.
    packed : bool, optional
        Run ``b_planes`` through the kernel's packed panel layout (packed in this call, as
        a model would pack its weights once); same results. Only for kernels with a
        packed form.

    Returns
    -------
    numpy.ndarray
        int32 array of shape (M, N), C-contiguous and 64-byte aligned.

    Raises
    ------
    ValueError
        Wrong dtype or rank, plane counts outside 1..4, unequal word counts, a ``W`` that
        disagrees with ``k``, stray tail bits, rows long enough to overflow int32, an
        unknown or unavailable kernel, or ``packed`` for a kernel without a packed form.
    """
    return _engine.kbit_gemm(_as_array(a_planes, "a_planes"), _as_array(b_planes, "b_planes"), str(kernel),
                             _as_int(num_threads, "num_threads"), None if k is None else _as_int(k, "k"),
                             bool(packed))


def list_kbit_kernels():
    """Zhou et al., DoReFa-Net (2016) / Bethge et al., BMXNet 2 (2019): the k-bit GEMM kernels of this build.

    Returns
    -------
    list of (str, bool)
        ``(name, available)`` for every kernel of :func:`kbit_gemm`'s list, reference
        first; ``available`` says whether this CPU runs it.
    """
    return [(str(n), bool(a)) for n, a in _engine.list_kbit_kernels()]


def _as_array(a, what):
    if not isinstance(a, np.ndarray):
        raise ValueError(f"{what} must be a numpy array, got {type(a).__name__}")
    return a


def _as_weights(w):
    return w if isinstance(w, PackedFilters) else _as_array(w, "weights")


def _as_int(v, what):
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise ValueError(f"{what} must be an int, got {v!r}")
    return int(v)


# ---------------------------------------------------------------------------------------
# Inference runtime (src/runtime, bmx::Model); appended by the runtime.

import errno as _errno
import os as _os
import stat as _stat

__all__ += ["Model", "ModelError", "validate_model", "FORMAT_VERSION", "MIN_FORMAT_VERSION"]

#: most threads one Model may use per predict() call (bmx::Model::set_num_threads)
MAX_THREADS = _engine.LIMITS["max_threads"]  # the C++ loader's bound
#: the newest model file format version this engine reads (``Model.version`` in the schema)
FORMAT_VERSION = _engine.FORMAT_VERSION
#: the oldest one (files of MIN_FORMAT_VERSION .. FORMAT_VERSION load)
MIN_FORMAT_VERSION = _engine.MIN_FORMAT_VERSION
#: raised for a bad, corrupted or unsupported model file (a ValueError subclass)
ModelError = _engine.ModelError


class Model:
    """A converted bmx model ready for inference (Bethge et al., "BMXNet 2", 2019).

    Parameters
    ----------
    model : str, os.PathLike, bytes, bytearray or memoryview
        Path of a ``.bmx`` file written by :func:`bmx.convert` / ``bmx-convert``, or its
        bytes. The file is validated completely before use (treated as hostile).
    num_threads : int, default 1
        Threads used inside each :meth:`predict` call.
    profile : bool, default False
        Collect per-op timings (see :meth:`profile`).

    Raises
    ------
    FileNotFoundError, PermissionError, IsADirectoryError
        The path cannot be read.
    ModelError
        The file is not a valid bmx model (truncated, corrupted, wrong version, wrong
        shapes or sizes); the message names the offending op. A ValueError subclass.
    TypeError
        ``model`` is neither a path nor bytes, or ``num_threads`` is not an int.

    Notes
    -----
    Input policy of :meth:`predict`: a 4-D float32 array ``(N, C, H, W)`` whose
    ``(C, H, W)`` equals ``input_shape[1:]``. Other dtypes are rejected (no silent cast),
    non-contiguous arrays are copied, NaN or Inf anywhere raises ValueError; every bad
    input raises ValueError.

    Thread safety: any number of Python threads may call :meth:`predict` on one Model at
    once. The GIL is released while it runs and each concurrent call gets its own
    activation buffers and worker threads (a pool of execution contexts inside the
    Model), so results equal serial calls. Serial calls reuse one context and allocate
    nothing after the first call with a given batch size.
    """

    def __init__(self, model, num_threads=1, profile=False):
        if isinstance(model, (bytes, bytearray, memoryview)):
            data = model
        elif isinstance(model, (str, _os.PathLike)):
            st = _os.stat(model)  # FileNotFoundError, PermissionError
            if _stat.S_ISDIR(st.st_mode):
                raise IsADirectoryError(_errno.EISDIR, "model path is a directory", str(model))
            if not _stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
                raise OSError(_errno.EINVAL, "model path is not a regular file", str(model))
            with open(model, "rb") as f:
                data = f.read()
        else:
            raise TypeError(f"Model() takes a path or bytes, got {type(model).__name__}")
        if isinstance(num_threads, bool) or not isinstance(num_threads, (int, np.integer)):
            raise TypeError(f"num_threads must be an int, got {type(num_threads).__name__}")
        if not 1 <= num_threads <= MAX_THREADS:
            raise ValueError(f"num_threads must be in [1, {MAX_THREADS}], got {num_threads}")
        self._m = _engine.Model(data, int(num_threads))
        self._m.profiling = bool(profile)

    @property
    def input_shape(self):
        """Input shape at batch 1, NCHW: ``(1, C, H, W)``."""
        return tuple(self._m.input_shape)

    @property
    def output_shape(self):
        """Output shape at batch 1 (``(1, num_classes)`` for a classifier)."""
        return tuple(self._m.output_shape)

    @property
    def num_classes(self):
        return self._m.num_classes

    @property
    def producer(self):
        """Writer recorded in the file, e.g. ``"bmx 0.1.0 (binarydensenet28)"``."""
        return self._m.producer

    @property
    def mean(self):
        """Per-channel input mean recorded by the converter (empty if none)."""
        return list(self._m.mean)

    @property
    def std(self):
        return list(self._m.std)

    @property
    def num_threads(self):
        return self._m.num_threads

    @num_threads.setter
    def num_threads(self, n):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"num_threads must be an int >= 1, got {n!r}")
        if n > MAX_THREADS:
            raise ValueError(f"num_threads must be in [1, {MAX_THREADS}], got {n}")
        self._m.num_threads = int(n)

    def predict(self, x):
        """Logits for a batch of images.

        Parameters
        ----------
        x : numpy.ndarray
            float32, shape ``(N, C, H, W)`` with ``(C, H, W) == input_shape[1:]``.

        Returns
        -------
        numpy.ndarray
            float32 ``(N, num_classes)`` (or ``(N, C, H, W)`` for a 4-D output).
        """
        if not isinstance(x, np.ndarray):
            raise ValueError(f"predict: expected a numpy float32 array, got {type(x).__name__}")
        if x.dtype != np.float32:
            raise ValueError(f"predict: input must be float32, got {x.dtype} (use x.astype(np.float32))")
        if x.ndim != 4 or tuple(x.shape[1:]) != self.input_shape[1:]:
            raise ValueError(f"predict: input must have shape (N, {', '.join(map(str, self.input_shape[1:]))}), "
                             f"got {tuple(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError("predict: empty batch")
        return self._m.predict(np.ascontiguousarray(x))

    __call__ = predict

    def preprocess(self, images):
        """Raw images -> the float32 NCHW input :meth:`predict` expects, with the mean/std
        the converter recorded: ``(images - mean[c]) / std[c]`` per channel.

        Parameters
        ----------
        images : array_like
            Raw pixels on the scale the model was trained from (e.g. uint8 0..255 for
            Fashion-MNIST), shape ``(N, C, H, W)``, or ``(N, H, W)`` for one channel.

        Raises
        ------
        ValueError
            The model records no mean/std (convert it with ``mean=``/``std=``, or from a
            ``bmx-train`` run directory), or the images do not have the input shape.
        """
        if not self.mean or not self.std:
            raise ValueError("preprocess: this model records no mean/std; convert it from a "
                             "bmx-train run (bmx-convert RUN_DIR) or with mean=/std=")
        x = np.asarray(images, dtype=np.float32)
        c, h, w = self.input_shape[1:]
        if x.ndim == 3 and c == 1:
            x = x[:, None]
        if x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
            raise ValueError(f"preprocess: images must have shape (N, {c}, {h}, {w})"
                             + (f" or (N, {h}, {w})" if c == 1 else "")
                             + f", got {tuple(np.shape(images))}")
        mean = np.asarray(self.mean, np.float32).reshape(1, -1, 1, 1)
        std = np.asarray(self.std, np.float32).reshape(1, -1, 1, 1)
        return np.ascontiguousarray((x - mean) / std, dtype=np.float32)

    @property
    def profiling(self):
        """Whether :meth:`predict` collects per-op timings."""
        return self._m.profiling

    @profiling.setter
    def profiling(self, on):
        self._m.profiling = bool(on)

    def profile(self, per_op=False):
        """Seconds spent per op kind over the profiled :meth:`predict` calls.

        Kinds: ``packing`` (fused BatchNorm + sign + bit-packing), ``binary_conv`` (with
        its fused per-channel scale/shift epilogue and folded residual adds),
        ``float_conv``, ``bn_threshold`` (affine ops, and the scale/shift of grouped binary
        convs, which is not fused), ``pool``, ``concat`` (copies the planner could not
        remove), ``other``. With ``per_op=True``: a list of ``("name (Type)", seconds)`` in graph
        order instead.
        """
        return list(self._m.profile_ops()) if per_op else dict(self._m.profile())

    def reset_profile(self):
        self._m.reset_profile()

    def summary(self):
        """Table of ops and value shapes."""
        return self._m.summary()

    def __repr__(self):
        return (f"bmx.engine.Model(input_shape={self.input_shape}, num_classes={self.num_classes}, "
                f"ops={self._m.num_ops}, num_threads={self.num_threads})")


def validate_model(data):
    """Check model bytes without preparing them for execution; raises :class:`ModelError`."""
    _engine.validate_model(data)
