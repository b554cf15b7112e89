"""Helpers every bmx command-line tool shares, defined once: the usage error and the parser
that raises it, the one-line rendering of an exception, atomic file writes and JSON files.

No MXNet here: the CLIs import this module to answer ``--help`` and ``--version`` fast.
"""
import argparse
import json
import os

import numpy as np

__all__ = ["UsageError", "int_at_least", "ArgumentParser", "first_line", "atomic_write", "write_bytes_atomic",
           "write_json", "read_json"]


class UsageError(Exception):
    """Bad command-line input: reported as one line on stderr, exit code 2."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises :class:`UsageError` instead of printing and exiting, so that
    each tool reports bad input in its own one-line format."""

    def error(self, message):
        raise UsageError(message)


def first_line(e):
    """The informative line of an exception (MXNet errors start with a C++ traceback)."""
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    for ln in lines:
        if ln.startswith("MXNetError:"):
            return ln[len("MXNetError:"):].strip()
    lines = [ln for ln in lines if not ln.startswith(("Traceback", "File ", "[bt]", "Stack trace"))]
    return lines[0] if lines else type(e).__name__


def _new_temp(d, base):
    """Create an empty temp file next to the target, mode 0666 minus the umask (what a plain
    open() gives: tempfile.mkstemp's 0600 would survive the rename)."""
    for _ in range(100):
        tmp = os.path.join(d, f".tmp-{os.urandom(4).hex()}-{base}")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"cannot create a temporary file in {d}")


def atomic_write(path, write_fn):
    """Write ``path`` through ``write_fn(tmp_path)``, fsync, then ``os.replace`` (atomic on
    POSIX): readers see the old file or the new one, never a part; a failure leaves no
    temporary file behind."""
    path = os.fspath(path)
    d = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(d):  # else the error would name the temp file
        raise FileNotFoundError(2, "output directory does not exist", d)
    fd, tmp = _new_temp(d, os.path.basename(path))
    os.close(fd)
    try:
        write_fn(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_bytes_atomic(path, data):
    """:func:`atomic_write` of ``data``."""
    def w(tmp):
        with open(tmp, "wb") as f:
            f.write(data)
    atomic_write(path, w)


def _json_default(o):
    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def write_json(path, obj, indent=2):
    """:func:`atomic_write` of ``obj`` as JSON (numpy scalars and arrays converted)."""
    def w(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent, default=_json_default)
            f.write("\n")
    atomic_write(path, w)


def read_json(path):
    """The JSON value in ``path``, or None when the file is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def int_at_least(lo):
    """Argparse type: an integer >= ``lo``."""
    def conv(s):
        try:
            v = int(s)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {s!r}") from None
        if v < lo:
            raise argparse.ArgumentTypeError(f"expected an integer >= {lo}, got {s!r}")
        return v
    return conv
