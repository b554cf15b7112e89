"""bmx-bench: benchmarks of the bmx engine against float baselines, in the same run.

Bethge et al., "BinaryDenseNet" (2019) / Rastegari et al., "XNOR-Net" (2016): a binary
convolution is an xnor-popcount GEMM with M = output channels, K = C_in * kh * kw bits
and N = output pixels; this tool measures it on the layer shapes of real networks.

Subcommands
-----------
``gemm``
    Every binary 3x3 conv of binarydensenet37 at 224x224: G binary-MAC/s of
    :func:`bmx.engine.binary_gemm` and of :func:`bmx.engine.binary_conv2d` (float input
    packing and im2col included; weights packed once with :func:`bmx.engine.pack_filters`,
    as a converted model holds them), numpy's
    float32 GEMM with one BLAS thread on the same M, N, K, the ratios, and the scaling
    of every thread count over one thread.

``models``
    Whole networks at batch 1 (resnete18, binarydensenet28, binarydensenet37, meliusnet22
    at 224x224 by default): the bmx engine on the converted model against MXNet on the
    float twin and on the Gluon binary model, at 1 and 2 threads (MXNet in a subprocess
    per thread count), with the ratios; ``--profile`` adds the engine's time per op kind
    and each binary convolution's rate against ``binary_gemm`` on the same M, N, K.

``train``
    Training images/s of a network and its float twin (:mod:`bmx.bench.train`).

Other subcommands register themselves in :data:`bmx.bench.cli.SUBCOMMANDS` (name -> (adder,
runner)); shared timing and machine helpers are in :mod:`bmx.bench.common`.
Timings are medians of ``--repeat`` samples; never assert them in tests.
"""

from .cli import SUBCOMMANDS, build_parser, main  # noqa: F401
