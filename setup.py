"""bmx: binary neural networks in MXNet Gluon with a fast C++ xnor-popcount engine.

The compiled module ``bmx._engine`` is built by CMake (pybind11); see CMakeLists.txt.
"""
import os
import subprocess
import sys
from pathlib import Path

from setuptools import Extension, find_packages, setup
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
        gen = ["-G", "Ninja"] if _has_ninja() else []
        subprocess.check_call(["cmake", "-S", str(ROOT), "-B", str(build_dir)] + gen + args)
        jobs = str(os.cpu_count() or 2)
        subprocess.check_call(["cmake", "--build", str(build_dir), "--target", "_engine", "-j", jobs])


def _has_ninja():
    from shutil import which
    return which("ninja") is not None


setup(
    name="bmx",
    version="0.1.0",
    description="Binary neural networks in MXNet Gluon with a fast xnor-popcount C++ engine",
    long_description=(ROOT / "README.md").read_text() if (ROOT / "README.md").exists() else "",
    long_description_content_type="text/markdown",
    packages=find_packages(include=["bmx", "bmx.*"]),
    ext_modules=[CMakeExtension("bmx._engine")],
    cmdclass={"build_ext": CMakeBuild},
    python_requires=">=3.9",
    install_requires=["mxnet==1.9.1", "numpy==1.23.5", "tqdm", "flatbuffers"],
    entry_points={
        "console_scripts": [
            "bmx-convert=bmx.converter:main",
            "bmx-bench=bmx.bench:main",
            "bmx-train=bmx.train:main",
            "bmx-launch=bmx.launch:main",
            "bmx-eval=bmx.evaluate:main",
        ]
    },
    zip_safe=False,
)
