#!/usr/bin/env python3
"""Mutation testing of bmx: inject one-line faults, one at a time, and check the tests fail.

Each mutation replaces one exact line fragment in the converter (``bmx/converter/``),
the runtime (``src/runtime/**``) or the kernels (``src/core/**`` and the convention header
they share) with a plausible bug: an off-by-one in padding, the sign convention flipped, a
threshold compared with ``<=`` instead of ``<``, a BatchNorm fold with the wrong sign, a
dropped bias, a wrong K, the popcount tail mask, ... The tree is copied to a scratch
directory first (``/work/main`` is never modified): for each mutation the scratch file is
patched, the extension is rebuilt when the mutation is in C++ (``setup.py build_ext
--inplace``, incremental after the first build), the relevant test subset runs with
``pytest -m "not slow" -x -q``, and the file is restored. A mutation is *killed* when the
tests fail (or time out), *survived* when they pass.

Not part of CI (the whole campaign takes hours on 2 cores: one incremental C++ build and
one test subset per mutation). Usage::

    .venv/bin/python scripts/mutate.py --list
    .venv/bin/python scripts/mutate.py --only bn_fold_shift_sign --only dense_bias_dropped
    .venv/bin/python scripts/mutate.py --kind converter
    .venv/bin/python scripts/mutate.py            # everything
    .venv/bin/python scripts/mutate.py --ctest    # C++ mutations also run ctest (tests/cpp)

Prints a table (mutation, where, result, first failing test, seconds) and exits 1 if any
mutation survived, 2 if a mutation no longer applies (its line changed: update the list)
or a mutant did not build, 0 otherwise.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Default test subsets (run in this order with -x: the quickest killers first).
CONVERTER_TESTS = ["tests/test_converter.py", "tests/test_engine_model.py", "tests/test_equivalence.py"]
RUNTIME_TESTS = ["tests/test_engine_model.py", "tests/test_equivalence.py", "tests/test_bad_inputs.py"]
KERNEL_TESTS = ["tests/test_kernels.py", "tests/test_convention.py", "tests/test_equivalence.py"]


@dataclass
class Mutation:
    name: str
    path: str      # relative to the repository root
    old: str       # exact fragment, must occur exactly once in the file
    new: str
    expect: str    # the tests expected to kill it, and why
    tests: list = field(default_factory=list)

    @property
    def kind(self):
        if self.path.startswith("bmx/"):
            return "converter"
        return "runtime" if self.path.startswith("src/runtime/") else "kernels"

    @property
    def cpp(self):
        return not self.path.endswith(".py")

    def test_files(self):
        if self.tests:
            return self.tests
        return {"converter": CONVERTER_TESTS, "runtime": RUNTIME_TESTS, "kernels": KERNEL_TESTS}[self.kind]


M = Mutation
MUTATIONS = [
    # ------------------------------------------------------------------ converter (Python)
    M("bn_fold_shift_sign", "bmx/converter/build_ops.py",
      "shift = beta - mean * scale", "shift = beta + mean * scale",
      "BN fold sign error: test_converter::test_bn_sign_fold (shift vs numpy), "
      "test_bn_after_binary_conv_folds_into_scale_shift_and_relu, every Gluon comparison"),
    M("bn_fold_no_eps", "bmx/converter/build_ops.py",
      "scale = gamma / np.sqrt(var + eps)", "scale = gamma / np.sqrt(var)",
      "scale off by ~eps/2var (5e-5 with eps=1e-4): test_converter::test_bn_sign_fold "
      "(scale compared at rtol 1e-6)"),
    M("bn_fix_gamma_ignored", "bmx/converter/build_ops.py",
      'if a.get("fix_gamma", True):', "if False:",
      "stored gamma used although MXNet uses 1: test_converter::test_bn_sign_fold[True] "
      "(gamma randomized away from 1)"),
    M("conv_bias_dropped_in_bn_fold", "bmx/converter/passes.py",
      'op.attrs["b"] = (b * s + t).astype(np.float32)', 'op.attrs["b"] = (0 * b * s + t).astype(np.float32)',
      "float conv bias lost when BN folds into it: "
      "test_converter::test_bn_into_float_conv_weights_and_bias"),
    M("dense_bias_dropped", "bmx/converter/build_ops.py",
      'b=None if b is None else b.copy(), units=int(a["num_hidden"]))',
      'b=None, units=int(a["num_hidden"]))',
      "Dense bias not written: every test whose Dense bias is randomized "
      "(test_converter::test_bn_sign_fold onwards, test_engine_model, test_equivalence); "
      "with zero-initialized biases this mutation survived"),
    M("bconv_wrong_K", "bmx/converter/build_blocks.py",
      "K = W.shape[1] * kernel[0] * kernel[1]", "K = W.shape[1] * kernel[0] * kernel[1] + 1",
      "shift of the (dot + K) / 2 offset wrong by one channel: "
      "test_converter::test_binary_conv_output_forms, test_bn_after_binary_conv..."),
    M("bconv_bn_fold_shift_sign", "bmx/converter/passes.py",
      'op.attrs["shift"] = op.attrs["shift"] * s + t', 'op.attrs["shift"] = op.attrs["shift"] * s - t',
      "BN after a binary conv folded with -t: "
      "test_converter::test_bn_after_binary_conv_folds_into_scale_shift_and_relu"),
    M("bconv_bn_fold_abs_scale", "bmx/converter/passes.py",
      'op.attrs["scale"] = op.attrs["scale"] * s', 'op.attrs["scale"] = op.attrs["scale"] * abs(s)',
      "a negative BN scale (gamma < 0) folded as positive: caught only because the tests "
      "randomize gamma with random signs: test_bn_after_binary_conv..., test_engine_model"),
    M("sign_fold_shift_dropped", "bmx/converter/passes.py",
      'op.attrs["shift"] = src.attrs["shift"].copy()', 'op.attrs["shift"] = 0 * src.attrs["shift"]',
      "BN -> sign folded without its shift: test_converter::test_bn_sign_fold"),
    M("pool_count_include_pad_flipped", "bmx/converter/build_ops.py",
      'count_include_pad=bool(a.get("count_include_pad", True)))',
      'count_include_pad=not a.get("count_include_pad", True))',
      "average pooling divides by the wrong window size at borders: "
      "test_converter::test_pooling_windows_match_mxnet[avg3-pad-excl]"),
    M("weight_pack_kh_kw_swapped", "bmx/converter/serialize.py",
      "Wt = np.transpose(np.asarray(W), (0, 2, 3, 1))", "Wt = np.transpose(np.asarray(W), (0, 3, 2, 1))",
      "binary filters stored transposed: "
      "test_converter::test_header_metadata_and_single_binary_conv_exact (bit positions)"),
    M("dorefa_levels_truncated", "bmx/converter/build_kbit.py",
      "L = np.clip(np.floor((wq + 1) * n / 2 + 0.5), 0, n)", "L = np.clip(np.floor((wq + 1) * n / 2), 0, n)",
      "DoReFa weight levels truncated instead of rounded (the 1e-6 check then refuses most "
      "nets): test_converter::test_kbit_conv_levels_weights_and_outputs"),
    M("quant_fold_shift_dropped", "bmx/converter/passes.py",
      'op.attrs["shift"] = src.attrs["shift"].copy()', 'op.attrs["shift"] = src.attrs["shift"].copy() * (op.kind == "sign")',
      "BN -> k-bit quantizer folded without its shift: test_converter::test_bn_folds_into_quantize"),
    M("probe_sign_of_zero", "bmx/converter/build_blocks.py",
      "return np.where(x < 0, -1.0, 1.0).astype(np.float32)",
      "return np.where(x <= 0, -1.0, 1.0).astype(np.float32)",
      "the converter's own sign (used to check what a quantizer computes) gives sign(0) = "
      "-1: the probe of every QActivation then disagrees with MXNet's -> ConversionError in "
      "every converter test"),
    # ------------------------------------------------------------------ runtime (C++)
    M("bdense_kernel_one_pixel", "src/runtime/ops/binary_dense.cc",
      "op.kh = x.h, op.kw = x.w;", "op.kh = 1, op.kw = 1;",
      "binary dense over a 4-D input reads only its first pixel: "
      "test_converter::test_binary_dense_exact_integers (4d case)",
      tests=["tests/test_converter.py"]),
    M("bdense_relu_dropped", "src/runtime/ops/binary_dense.cc",
      "o.relu = op.relu;", "o.relu = false;",
      "binary dense ignores its folded ReLU: test_converter::test_binary_dense_folds_bn_relu_and_chains",
      tests=["tests/test_converter.py"]),
    M("mul_no_broadcast", "src/runtime/ops/mul.cc",
      "const bool bcast = c.value(op.in[1]).c == 1;", "const bool bcast = false;",
      "XNOR input scale read as a full-shape value: test_converter::test_xnor_conv_becomes_sign_bconv_times_input_scale",
      tests=["tests/test_converter.py"]),
    M("meanabs_no_abs", "src/runtime/ops/mean_abs_channels.cc",
      "s += std::fabs(v[ch]);", "s += v[ch];",
      "XNOR input magnitude without |x|: test_converter::test_xnor_conv_becomes_sign_bconv_times_input_scale",
      tests=["tests/test_converter.py"]),
    M("bdense_converter_nchw_order", "bmx/converter/serialize.py",
      "W = np.asarray(at[\"W\"]).reshape((at[\"units\"],) + tuple(at[\"in_chw\"]))",
      "W = np.asarray(at[\"W\"]).reshape((at[\"units\"],) + tuple(at[\"in_chw\"])[::-1]).transpose(0, 3, 2, 1)",
      "binary dense weights packed in the wrong flatten order: test_converter::test_binary_dense_exact_integers"),
    M("dense_bias_ignored", "src/runtime/ops/dense.cc",
      "if (p->bias() && p->bias()->size()) std::memcpy(", "if (false && p->bias()) std::memcpy(",
      "engine drops the Dense bias: test_engine_model::test_engine_matches_gluon_and_interpreter, "
      "test_equivalence::test_zoo_64x64 (Dense bias randomized)"),
    M("conv_bias_relu_dropped", "src/runtime/ops/conv2d.cc",
      "o[ch] = std::max(o[ch] + bias[ch], 0.0f);", "o[ch] = std::max(o[ch], 0.0f);",
      "bias (a folded BN shift) of an im2col/1x1 float conv with ReLU lost: "
      "test_engine_model (BinaryDenseNet transitions), test_equivalence::test_zoo_64x64"),
    M("affine_relu_shift_sign", "src/runtime/ops/affine.cc",
      "o[ch] = std::max(s[ch] * scale[ch] + shift[ch], 0.0f);",
      "o[ch] = std::max(s[ch] * scale[ch] - shift[ch], 0.0f);",
      "an unfoldable BN (after max-pool) applied with -shift: test_engine_model "
      "(binarydensenet28), test_equivalence::test_zoo_64x64[binarydensenet28]"),
    M("add_subtracts", "src/runtime/ops/add.cc",
      "o[ch] = x[ch] + y[ch];", "o[ch] = x[ch] - y[ch];",
      "residual add subtracts: test_engine_model[resnete18], test_equivalence[resnete18]"),
    M("pool_count_include_pad_ignored", "src/runtime/ops/pool2d.cc",
      "op.count_include_pad = p->count_include_pad();", "op.count_include_pad = !p->count_include_pad();",
      "average pool border windows divided by the wrong count: "
      "test_converter::test_pooling_windows_match_mxnet (engine vs MXNet per pooling form)",
      tests=["tests/test_converter.py"] + RUNTIME_TESTS),
    M("kconv_pad_correction_dropped", "src/runtime/ops/kbit_conv2d.cc",
      "epilogue(p, s, scale, bsa, shift, border ? corr : nullptr, n, op.relu, o);",
      "epilogue(p, s, scale, bsa, shift, nullptr, n, op.relu, o);",
      "k-bit conv on Levels ignores Gluon's -1 padding at the border: "
      "test_converter::test_kbit_conv_levels_weights_and_outputs, test_deploy_variants[act2]",
      tests=["tests/test_converter.py", "tests/test_deploy_variants.py"]),
    M("kconv_bits_padding_not_counted", "src/runtime/ops/kbit_conv2d.cc",
      "else if (!g.levels) s += g.c;", "else if (false) s += g.c;",
      "k-bit conv on +-1 input drops the padded taps from its window sums: "
      "test_converter::test_kbit_conv_levels_weights_and_outputs[1-2], test_deploy_variants[dorefa2]",
      tests=["tests/test_converter.py", "tests/test_deploy_variants.py"]),
    M("kconv_dorefa_offset_sign", "src/runtime/ops/kbit_conv2d.cc",
      "Encoding{2.0 / ((1 << planes) - 1), -1.0}", "Encoding{2.0 / ((1 << planes) - 1), 1.0}",
      "DoReFa weights decoded as 2 L / n + 1: test_converter::test_kbit_conv_levels_weights_and_outputs",
      tests=["tests/test_converter.py"]),
    M("sign_shift_is_scale", "src/runtime/ops/sign.cc",
      "copy_floats(p->shift(), op.shift);", "copy_floats(p->scale(), op.shift);",
      "BN -> sign thresholds loaded with the wrong vector: every engine test with a folded "
      "BN (test_engine_model, test_equivalence)"),
    # ------------------------------------------------------------------ kernels (C++)
    M("bitpack_sign_of_zero", "src/core/bitpack/kernels.h",
      "w |= static_cast<word_t>(x[i] < T(0)) << i;", "w |= static_cast<word_t>(x[i] <= T(0)) << i;",
      "sign(0) packed as -1 in partial words: test_kernels::test_pack_bits_special_values / "
      "test_pack_bits_matches_convention (zeros at tail positions)"),
    M("xnor_dot_off_by_one", "src/include/bmx/convention.h",
      "return k - 2 * popcount_xor; }", "return k - 2 * popcount_xor + 1; }",
      "every xnor dot product +1: test_kernels::test_binary_gemm_bit_exact, "
      "test_equivalence::test_single_binary_conv_exact_integers"),
    M("tail_mask_all_ones", "src/include/bmx/convention.h",
      "((word_t{1} << (k % kWordBits)) - 1)", "(~word_t{0})",
      "-1 padding words keep their tail bits: popcount counts bits past C_in at borders: "
      "test_equivalence::test_single_binary_conv_exact_integers (70 channels, pad 1), "
      "test_kernels::test_binary_conv2d_vs_numpy"),
    M("im2col_row_pad_off_by_one", "src/core/bconv2d/bconv2d.cc",
      "const std::int64_t iy = y * s.stride_h - s.pad_h + ky * s.dilation_h;",
      "const std::int64_t iy = y * s.stride_h - s.pad_h + 1 + ky * s.dilation_h;",
      "binary conv reads rows shifted by one (padding off by one): "
      "test_kernels::test_binary_conv2d_vs_numpy, test_equivalence (every net)"),
    M("bgemm_scalar_and_for_xor", "src/core/bgemm/bgemm.cc",
      "acc[i][j] += __builtin_popcountll(av[i] ^ bv[j]);", "acc[i][j] += __builtin_popcountll(av[i] & bv[j]);",
      "portable / POPCNT kernels count matches wrongly: test_kernels::test_binary_gemm_bit_exact "
      "[bgemm_4x4__scalar], test_equivalence::test_dispatch_levels_agree_with_gluon"),
    M("bgemm_avx512_and_for_xor", "src/core/bgemm/bgemm_8x16__avx512.cc",
      "lo[i] = _mm512_add_epi64(lo[i], _mm512_popcnt_epi64(_mm512_xor_si512(av, b0)));",
      "lo[i] = _mm512_add_epi64(lo[i], _mm512_popcnt_epi64(_mm512_and_si512(av, b0)));",
      "AVX-512 kernel counts matches wrongly (AVX-512 CPUs only): "
      "test_kernels::test_binary_gemm_bit_exact[bgemm_8x16__avx512]"),
    M("bgemm_avx512_k_minus_popcount", "src/core/bgemm/bgemm_8x16__avx512.cc",
      "const __m256i r0 = _mm256_sub_epi32(k, _mm256_slli_epi32(_mm512_cvtepi64_epi32(lo[i]), 1));",
      "const __m256i r0 = _mm256_sub_epi32(k, _mm256_slli_epi32(_mm512_cvtepi64_epi32(lo[i]), 0));",
      "AVX-512 kernel returns K - popcount instead of K - 2 popcount (AVX-512 CPUs only): "
      "test_kernels::test_binary_gemm_bit_exact"),
    M("signpack_threshold_le", "src/core/signpack/signpack__avx512.cc",
      "return _cvtmask16_u32(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LT_OQ));",
      "return _cvtmask16_u32(_mm512_cmp_ps_mask(v, _mm512_setzero_ps(), _CMP_LE_OQ));",
      "folded BN threshold compared with <= (sign(0) = -1) in the AVX-512 sign kernel: only "
      "exact zeros of scale * x + shift differ; test_kernels::test_sign_pack_kernels_vs_numpy "
      "(every sign-pack kernel this CPU runs, with exact zeros; skipped where AVX-512 is absent)"),
    M("kbgemm_avx2_plane_weight", "src/core/kbgemm/kbgemm_2x4__avx2.cc",
      "const __m128i shift = _mm_cvtsi32_si128(p + q);", "const __m128i shift = _mm_cvtsi32_si128(p * q);",
      "k-bit GEMM weighs plane pair (p, q) by 2^(p*q): test_kernels::test_kbit_gemm* (kbgemm_2x4__avx2)"),
    M("levelpack_avx512_tie_down", "src/core/signpack/signpack__avx512.cc",
      "_mm512_mask_cmp_ps_mask(live, u, _mm512_set1_ps(t - 0.5f), _CMP_GE_OQ)",
      "_mm512_mask_cmp_ps_mask(live, u, _mm512_set1_ps(t - 0.5f), _CMP_GT_OQ)",
      "k-bit activations round halves down in the AVX-512 level kernel (AVX-512 CPUs only): "
      "test_kernels::test_level_pack_kernels_vs_numpy (exact ties), "
      "test_converter::test_kbit_conv_levels_weights_and_outputs (levels vs Gluon)",
      tests=["tests/test_kernels.py", "tests/test_converter.py"]),
    M("levelpack_avx2_tie_down", "src/core/signpack/signpack__avx2.cc",
      "_mm256_cmp_ps(u, _mm256_set1_ps(t - 0.5f), _CMP_GE_OQ)",
      "_mm256_cmp_ps(u, _mm256_set1_ps(t - 0.5f), _CMP_GT_OQ)",
      "k-bit activations round halves down in the AVX2 level kernel: "
      "test_kernels::test_level_pack_kernels_vs_numpy[level_pack__avx2] (exact ties)",
      tests=["tests/test_kernels.py"]),
    M("signpack_avx2_threshold_le", "src/core/signpack/signpack__avx2.cc",
      "_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LT_OQ));",
      "_mm256_movemask_ps(_mm256_cmp_ps(v, zero, _CMP_LE_OQ));",
      "the AVX2 sign kernel's threshold compared with <=: test_kernels::test_sign_pack_kernels_vs_numpy "
      "(sign_pack__avx2, exact zeros)"),
    M("signpack_scalar_shift_sign", "src/core/signpack/signpack.cc",
      "const float v = scale[ch] * x[ch] + shift[ch];", "const float v = scale[ch] * x[ch] - shift[ch];",
      "portable sign kernel applies -shift: test_equivalence::test_dispatch_levels_agree_with_gluon "
      "(portable level)"),
    M("grouped_tail_mask_all_ones", "src/core/bconv2d_grouped/bconv2d_grouped.cc",
      "const word_t mask = tail_mask(cg);", "const word_t mask = ~word_t{0};",
      "grouped binary conv keeps bits past C_in/groups: "
      "test_equivalence::test_single_binary_conv_exact_integers (C_in/g = 35 and 32)"),
    M("fconv_avx512_fmsub", "src/core/fconv2d/fconv2d__avx512.cc",
      "static Reg fmadd(Reg a, Reg b, Reg c) { return _mm512_fmadd_ps(a, b, c); }",
      "static Reg fmadd(Reg a, Reg b, Reg c) { return _mm512_fmsub_ps(a, b, c); }",
      "direct float conv (ImageNet 7x7 stem) accumulates wrongly (AVX-512 CPUs only): "
      "test_equivalence::test_dispatch_levels_agree_with_gluon[resnete18]"),
]


def _ignore(src, names):
    skip = {".git", ".venv", "build", "runs", "__pycache__", ".pytest_cache", "node_modules"}
    return [n for n in names if n in skip or n.endswith((".pyc", ".o"))]


def _run(cmd, cwd, env, timeout, log):
    t0 = time.time()
    with open(log, "w") as f:
        try:
            rc = subprocess.run(cmd, cwd=cwd, env=env, stdout=f, stderr=subprocess.STDOUT,
                                timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            rc = None
    return rc, time.time() - t0


def _first_failure(log):
    text = open(log, errors="replace").read()
    m = re.search(r"^(?:FAILED|ERROR) (\S+)", text, re.M)
    if m:
        return m.group(1)
    m = re.search(r"^(\S+::\S+) (?:FAILED|ERROR)", text, re.M)
    return m.group(1) if m else (text.strip().splitlines() or ["?"])[-1][:80]


class Scratch:
    """A copy of the repository whose files are patched one mutation at a time."""

    def __init__(self, args):
        self.args = args
        self.dir = args.workdir or tempfile.mkdtemp(prefix="bmx-mutate-")
        self.src = os.path.join(self.dir, "repo")
        self.python = args.python
        self.built = False
        self.ctest_configured = False

    def prepare(self):
        if os.path.isdir(self.src):
            shutil.rmtree(self.src)
        shutil.copytree(ROOT, self.src, ignore=_ignore, symlinks=True)
        self.env = dict(os.environ, PYTHONPATH=self.src, PYTHONDONTWRITEBYTECODE="1")
        out = subprocess.run([self.python, "-c", "import bmx, os; print(os.path.realpath(bmx.__file__))"],
                             cwd=self.src, env=self.env, capture_output=True, text=True)
        where = out.stdout.strip()
        if out.returncode != 0 or not where.startswith(os.path.realpath(self.src)):
            sys.exit(f"mutate: the scratch copy's bmx is not the one imported ({where or out.stderr})")

    def build(self):
        log = os.path.join(self.dir, "build.log")
        rc, secs = _run([self.python, "setup.py", "-q", "build_ext", "--inplace"], self.src,
                        dict(self.env, BMX_BUILD_DIR=os.path.join(self.src, "build", "py")),
                        self.args.build_timeout, log)
        self.built = rc == 0
        return rc == 0, secs, log

    def ctest(self):
        bdir = os.path.join(self.src, "build", "cpp")
        log = os.path.join(self.dir, "ctest.log")
        if not self.ctest_configured:
            rc, _ = _run(["cmake", "-S", self.src, "-B", bdir, "-G", "Ninja", "-DBMX_BUILD_TESTS=ON"],
                         self.src, self.env, self.args.build_timeout, log)
            if rc != 0:
                return None, log
            self.ctest_configured = True
        rc, _ = _run(["cmake", "--build", bdir, "-j", str(self.args.jobs)], self.src, self.env,
                     self.args.build_timeout, log)
        if rc != 0:
            return None, log
        rc, _ = _run(["ctest", "--test-dir", bdir, "-j", str(self.args.jobs), "--timeout", "600"],
                     self.src, self.env, self.args.timeout, log)
        return rc, log

    def pytest(self, files, log):
        cmd = [self.python, "-m", "pytest", "-m", "not slow", "-x", "-q", "-p", "no:cacheprovider",
               "-rfE"] + files + self.args.pytest_args
        return _run(cmd, self.src, self.env, self.args.timeout, log)


def run_mutation(mut, scr):
    path = os.path.join(scr.src, mut.path)
    with open(path) as f:
        text = f.read()
    n = text.count(mut.old)
    if n != 1:
        return {"result": "stale", "detail": f"fragment found {n} times", "secs": 0.0}
    log = os.path.join(scr.dir, f"{mut.name}.log")
    t0 = time.time()
    with open(path, "w") as f:
        f.write(text.replace(mut.old, mut.new))
    try:
        if mut.cpp:
            ok, _, blog = scr.build()
            if not ok:
                return {"result": "error", "detail": f"mutant does not build ({blog})",
                        "secs": time.time() - t0}
        rc, _ = scr.pytest(mut.test_files(), log)
        if rc is None:
            res = {"result": "killed", "detail": "timeout"}
        elif rc == 0:
            res = {"result": "survived", "detail": "pytest passed"}
        elif rc in (1, 2) or rc < 0 or rc > 128:  # failures, errors, crash (signal)
            res = {"result": "killed", "detail": _first_failure(log)}
        else:
            res = {"result": "error", "detail": f"pytest exit code {rc} ({log})"}
        if mut.cpp and scr.args.ctest and res["result"] == "survived":
            crc, clog = scr.ctest()
            if crc is None:
                res = {"result": "error", "detail": f"C++ tests do not build ({clog})"}
            elif crc != 0:
                res = {"result": "killed", "detail": f"ctest ({clog})"}
    finally:
        with open(path, "w") as f:
            f.write(text)
    res["secs"] = time.time() - t0
    return res


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--only", action="append", default=[], metavar="NAME",
                   help="run only this mutation (repeatable)")
    p.add_argument("--kind", choices=["converter", "runtime", "kernels"], action="append",
                   help="run only mutations of this part (repeatable)")
    p.add_argument("--list", action="store_true", help="list the mutations and exit")
    p.add_argument("--python", default=os.path.join(ROOT, ".venv", "bin", "python"),
                   help="interpreter with the project's dependencies (default: .venv)")
    p.add_argument("--workdir", help="scratch directory (default: a new temporary one)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per test run")
    p.add_argument("--build-timeout", type=float, default=3600, help="seconds per build")
    p.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="parallel build jobs")
    p.add_argument("--ctest", action="store_true",
                   help="C++ mutations that survive pytest also run the C++ tests (tests/cpp)")
    p.add_argument("--no-baseline", action="store_true",
                   help="skip the unmutated run of each test subset")
    p.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = p.parse_args(argv)

    if args.list:
        for m in MUTATIONS:
            print(f"{m.name:34s} {m.kind:9s} {m.path}\n    {m.old!r}\n -> {m.new!r}\n    kill: {m.expect}")
        return 0
    names = {m.name for m in MUTATIONS}
    unknown = [n for n in args.only if n not in names]
    if unknown:
        p.error(f"unknown mutation(s) {unknown}; see --list")
    todo = [m for m in MUTATIONS if (not args.only or m.name in args.only)
            and (not args.kind or m.kind in args.kind)]
    if not os.path.exists(args.python):
        p.error(f"--python {args.python} does not exist")

    scr = Scratch(args)
    print(f"mutate: scratch copy in {scr.dir}", flush=True)
    scr.prepare()
    if any(m.cpp for m in todo):
        print("mutate: building the unmutated extension in the scratch copy ...", flush=True)
        ok, secs, blog = scr.build()
        if not ok:
            sys.exit(f"mutate: the unmutated tree does not build, see {blog}")
        print(f"mutate: built in {secs:.0f} s", flush=True)
    if not args.no_baseline:
        for files in sorted({tuple(m.test_files()) for m in todo}):
            log = os.path.join(scr.dir, "baseline.log")
            rc, secs = scr.pytest(list(files), log)
            print(f"mutate: baseline {' '.join(files)}: exit {rc} in {secs:.0f} s", flush=True)
            if rc != 0:
                sys.exit(f"mutate: the unmutated tests fail ({_first_failure(log)}); see {log}")

    rows = []
    for m in todo:
        print(f"mutate: {m.name} ({m.path}) ...", flush=True)
        r = run_mutation(m, scr)
        rows.append((m, r))
        print(f"mutate:   {r['result']}: {r['detail']} ({r['secs']:.0f} s)", flush=True)
    if any(m.cpp for m in todo) and scr.built:
        scr.build()  # leave the scratch extension unmutated (with --keep)

    w = max(len(m.name) for m, _ in rows) if rows else 10
    print(f"\n{'mutation':{w}s}  {'where':44s}  {'result':8s}  {'secs':>6s}  detail")
    for m, r in rows:
        print(f"{m.name:{w}s}  {m.path:44s}  {r['result']:8s}  {r['secs']:6.0f}  {r['detail']}")
    counts = {k: sum(r["result"] == k for _, r in rows) for k in ("killed", "survived", "stale", "error")}
    print(f"\n{counts['killed']} killed, {counts['survived']} survived, {counts['stale']} stale, "
          f"{counts['error']} errors, of {len(rows)}")
    if not args.keep:
        shutil.rmtree(scr.dir, ignore_errors=True)
    if counts["survived"]:
        return 1
    return 2 if counts["stale"] or counts["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
