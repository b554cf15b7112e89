"""bmx: binary neural networks in MXNet Gluon with a fast C++ xnor-popcount engine.

The compiled module ``bmx._engine`` is built by CMake (pybind11); see CMakeLists.txt.
The package metadata is in pyproject.toml (PEP 517/621).
"""
import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext

ROOT = Path(__file__).resolve().parent


class CMakeExtension(Extension):
    def __init__(self, name):
        super().__init__(name, sources=[])


class CMakeBuild(build_ext):
    """Configure and build the pybind11 module with CMake, then place it where
    setuptools expects the extension (in-place for editable installs)."""

    def build_extension(self, ext):
        import pybind11

        out_dir = Path(self.get_ext_fullpath(ext.name)).resolve().parent
        build_dir = Path(os.environ.get("BMX_BUILD_DIR", ROOT / "build" / "py")).resolve()
        build_dir.mkdir(parents=True, exist_ok=True)
        cfg = os.environ.get("BMX_BUILD_TYPE", "Release")
        args = [
            f"-DCMAKE_BUILD_TYPE={cfg}",
            f"-DPython_EXECUTABLE={sys.executable}",
            f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
            f"-DBMX_PYTHON_OUT={out_dir}",
            "-DBMX_BUILD_PYTHON=ON",
            "-DBMX_BUILD_TESTS=OFF",
        ]
        extra = os.environ.get("BMX_CMAKE_ARGS")
        if extra:
            args += extra.split()
        # Name the ninja of this build every time: an isolated build (pip wheel .) runs one
        # from a temporary environment, and a cached path to it breaks the next build here.
        gen = ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={_has_ninja()}"] if _has_ninja() else []
        subprocess.check_call(["cmake", "-S", str(ROOT), "-B", str(build_dir)] + gen + args)
        jobs = str(os.cpu_count() or 2)
        subprocess.check_call(["cmake", "--build", str(build_dir), "--target", "_engine", "-j", jobs])


def _has_ninja():
    """Path of the ninja on PATH, or None."""
    from shutil import which
    return which("ninja")


# Metadata, dependencies, extras and console scripts are in pyproject.toml; this file
# only adds the CMake-built extension.
setup(
    ext_modules=[CMakeExtension("bmx._engine")],
    cmdclass={"build_ext": CMakeBuild},
)
