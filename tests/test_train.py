"""Tests of bmx-train (Bethge et al., "Back to Simplicity", 2019, training recipe): the
command line's bad inputs, the learning-rate schedule, RAdam against a numpy reference,
the outputs of a short run, exact resume, and distillation / mixup / label smoothing."""
import csv
import json
import math
import os
import subprocess
import sys

import mxnet as mx
import numpy as np
import pytest

from bmx import train as bt
from bmx.train.cli import _Hooks

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = ("binarydensenet_flex:block_config=(1,1),growth_rate=16,init_features=16,"
        "transition_channels=(16,)")
BASE = ["--model", TINY, "--dataset", "digits", "--image-size", "8", "--batch-size", "64",
        "--quiet", "--no-plot"]


def _run(capsys, argv, **kw):
    rc = bt.run(argv, **kw)
    cap = capsys.readouterr()
    _run.out = cap.out  # the result line (stdout) of the last run
    return rc, cap.err


# ----------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("argv, needle", [
    (["--model", "resnet9000"], "unknown model 'resnet9000'"),
    (["--model", "binarydensenet_flex:block_config=(2,2"], "bad model spec"),
    (["--model", "binarydensenet_flex:growth_rate=32"], "cannot build model"),
    (["--epochs", "0"], "--epochs"),
    (["--epochs", "two"], "--epochs"),
    (["--lr", "-0.1"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--batch-size", "1.5"], "--batch-size"),
    (["--bits", "64"], "--bits"),
    (["--label-smoothing", "1"], "--label-smoothing"),
    (["--clip-threshold", "-1"], "--clip-threshold"),
    (["--dataset", "svhn"], "--dataset"),
    (["--lr-mode", "step"], "--lr-steps"),
    (["--lr-steps", "3"], "--lr-mode step"),
    (["--lr-mode", "step", "--lr-steps", "5,2", "--epochs", "8"], "increasing"),
    (["--lr-mode", "step", "--lr-steps", "9", "--epochs", "8"], "1..7"),
    (["--warmup-epochs", "10", "--epochs", "10"], "--warmup-epochs"),
    (["--teacher", "binarydensenet28"], "--teacher and --teacher-params"),
    (["--teacher", "x", "--teacher-params", "/nonexistent.params"], "no such file"),
    (["--data-dir", "/tmp"], "drop --data-dir"),
    (["--kvstore", "dist_sync"], "launcher"),
    (["--resume"], "no checkpoint"),
    (["--classes", "5"], "--classes"),
    (["--warmup-epochs", "-1"], "--warmup-epochs"),
    (["--kvstore", "nccl"], "--kvstore"),
])
def test_bad_input_one_line_exit_2(capsys, tmp_path, argv, needle):
    rc, err = _run(capsys, BASE + ["--save-dir", str(tmp_path)] + argv)
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("bmx-train: error: ") and needle in lines[0], lines[0]


@pytest.mark.parametrize("dataset, needle", [("mnist", "train-images-idx3-ubyte"),
                                             ("cifar10", "cifar-10-batches-py"),
                                             ("imagenet", "train.rec"),
                                             ("imagefolder", "DIR/train/<class>")])
def test_missing_data_says_what_to_put_where(capsys, tmp_path, dataset, needle):
    rc, err = _run(capsys, ["--dataset", dataset, "--data-dir", str(tmp_path), "--model", TINY,
                            "--save-dir", str(tmp_path / "out"), "--quiet"])
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1


def test_console_script_exit_code(tmp_path):
    """The real command line (a fresh process) reports bad input with exit code 2."""
    p = subprocess.run([sys.executable, "-m", "bmx.train", "--model", "nosuchnet", "--save-dir",
                        str(tmp_path)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert p.returncode == 2
    assert p.stderr.strip().splitlines() == [p.stderr.strip()]
    assert "unknown model 'nosuchnet'" in p.stderr and "binarydensenet28" in p.stderr


# ----------------------------------------------------------------------------- schedule
def test_lr_schedule():
    a = bt.parse_args(["--lr", "0.01", "--epochs", "4", "--warmup-epochs", "1"])
    nb = 10
    lrs = [bt.lr_at(s, nb, a) for s in range(40)]
    np.testing.assert_allclose(lrs[:10], 0.01 * np.arange(1, 11) / 10)
    assert lrs[10] == pytest.approx(0.01)
    assert lrs[25] == pytest.approx(0.01 * 0.5 * (1 + math.cos(math.pi * 15 / 30)))
    assert all(x > y for x, y in zip(lrs[10:], lrs[11:]))
    s = bt.parse_args(["--lr", "1", "--epochs", "40", "--lr-mode", "step", "--lr-steps",
                       "34,37"])
    assert [bt.lr_at(e * 5, 5, s) for e in (0, 33, 34, 36, 37, 39)] == pytest.approx(
        [1, 1, 0.1, 0.1, 0.01, 0.01])


def test_radam_matches_numpy_reference():
    from bmx.optim import RAdam
    assert mx.optimizer.create("radam").__class__ is RAdam
    rng = np.random.RandomState(0)
    w0 = rng.randn(5, 3).astype(np.float32)
    grads = [rng.randn(5, 3).astype(np.float32) for _ in range(8)]
    opt = RAdam(learning_rate=0.1, wd=0.01, rescale_grad=0.5)
    w = mx.nd.array(w0)
    state = opt.create_state(0, w)
    for g in grads:
        opt.update(0, w, mx.nd.array(g), state)
    # reference: Liu et al. (2020), Algorithm 2, with L2 weight decay added to the gradient
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.1
    m = np.zeros_like(w0, dtype=np.float64)
    v = np.zeros_like(m)
    x = w0.astype(np.float64)
    rho_inf = 2 / (1 - b2) - 1
    for t, g in enumerate(grads, 1):
        g = 0.5 * g.astype(np.float64) + 0.01 * x
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        mh = m / (1 - b1 ** t)
        rho = rho_inf - 2 * t * b2 ** t / (1 - b2 ** t)
        if rho > 4:
            r = math.sqrt((rho - 4) * (rho - 2) * rho_inf / ((rho_inf - 4) * (rho_inf - 2) * rho))
            adaptive = math.sqrt(1 - b2 ** t) / (np.sqrt(v) + eps)  # l_t = sqrt((1-b2^t)/v_t)
            x = x - lr * r * mh * adaptive
        else:
            x = x - lr * mh
    np.testing.assert_allclose(w.asnumpy(), x, rtol=1e-5, atol=1e-6)


def test_model_spec_parsing():
    assert bt.parse_model_spec("binarydensenet28") == ("binarydensenet28", {})
    assert bt.parse_model_spec("binarydensenet_flex:block_config=(1,2),reduction=2.5") == (
        "binarydensenet_flex", {"block_config": (1, 2), "reduction": 2.5})
    with pytest.raises(bt.UsageError):
        bt.parse_model_spec("x:1,2")
    with pytest.raises(bt.UsageError):
        bt.parse_model_spec("x:a=os.system('true')")


# ----------------------------------------------------------------------------- a real run
def test_short_run_outputs(tmp_path, capsys):
    out = tmp_path / "run"
    rc, err = _run(capsys, BASE[:-1] + ["--epochs", "2", "--save-dir", str(out), "--seed", "1"])
    assert rc == 0, err
    for f in ("log.csv", "curves.png", "checkpoint.json", "summary.json", "run.json",
              "best.params", "model-symbol.json", "model-0000.params"):
        assert (out / f).is_file(), f
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = list(csv.DictReader(open(out / "log.csv")))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])
    summ = json.load(open(out / "summary.json"))
    assert summ["final_val_acc"] == pytest.approx(float(rows[1]["val_acc"]))
    assert summ["best_val_acc"] == max(float(r["val_acc"]) for r in rows)
    # results on stdout, progress on stderr
    assert "final val acc" in _run.out and "test acc" in _run.out and "final" not in err
    # digits: 1,294 train, the last 143 of the training split as validation, 360 test;
    # the test set scored once, with the exported model
    assert (summ["num_train"], summ["num_val"], summ["num_test"]) == (1294, 143, 360)
    assert 0.0 <= summ["test_acc"] <= 1.0 and summ["test_loss"] > 0
    ck = json.load(open(out / "checkpoint.json"))
    assert ck["epoch"] == 1 and (out / ck["params"]).is_file() and (out / ck["states"]).is_file()
    # only the latest epoch's checkpoint files are kept; no temporary files are left
    names = os.listdir(out)
    assert not [n for n in names if n.startswith(".tmp-")]
    assert sorted(n for n in names if n.startswith("ckpt-")) == [
        "ckpt-epoch0002.params", "ckpt-epoch0002.rng", "ckpt-epoch0002.states"]
    # the exported pair reproduces the reported validation accuracy
    from bmx.data import get_dataset
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net = mx.gluon.SymbolBlock.imports(str(out / "model-symbol.json"), ["data"],
                                           str(out / "model-0000.params"))
    ds = get_dataset("digits", image_size=8)
    acc = (net(mx.nd.array(ds.val_x)).asnumpy().argmax(1) == ds.val_y).mean()
    assert acc == pytest.approx(summ["final_val_acc"])
    # wd_mult: 0 on binary weights and BatchNorm, 1 on full-precision weights
    run = json.load(open(out / "run.json"))
    assert run["stem"] == "thumbnail" and run["image_shape"] == [1, 8, 8]


def test_binary_weights_and_bn_get_no_weight_decay():
    net = bt.build_model(TINY, 10, stem="thumbnail")
    from bmx.nn import QConv2D
    seen = {"binary": 0, "bn": 0, "fp": 0}

    def walk(b):
        yield b
        for c in b._children.values():
            yield from walk(c)
    binary = {c.weight.name for c in walk(net) if isinstance(c, QConv2D) and c.bits == 1}
    for name, p in net.collect_params().items():
        if name in binary:
            assert p.wd_mult == 0
            seen["binary"] += 1
        elif name.endswith(("_gamma", "_beta")):
            assert p.wd_mult == 0
            seen["bn"] += 1
        elif name.endswith("_weight"):
            assert p.wd_mult == 1
            seen["fp"] += 1
    assert min(seen.values()) > 0


def _params(path):
    return {k: v.asnumpy() for k, v in mx.nd.load(str(path)).items()}


def test_resume_equals_uninterrupted_run(tmp_path, capsys):
    """Interrupt in the middle of epoch 2 of 3, resume in a fresh process: the final
    parameters are bit-identical to those of an uninterrupted run with the same seed."""
    argv = BASE + ["--epochs", "3", "--seed", "7", "--optimizer", "radam", "--mixup", "0.2",
                   "--label-smoothing", "0.1", "--warmup-epochs", "0.5"]
    ref, cut = tmp_path / "ref", tmp_path / "cut"
    rc, err = _run(capsys, argv + ["--save-dir", str(ref)])
    assert rc == 0, err

    def interrupt(epoch, batch):
        if epoch == 1 and batch == 7:
            raise KeyboardInterrupt
    rc, err = _run(capsys, argv + ["--save-dir", str(cut)], hooks=_Hooks(interrupt))
    assert rc == 130 and "--resume" in err
    assert json.load(open(cut / "checkpoint.json"))["epoch"] == 0
    p = subprocess.run([sys.executable, "-m", "bmx.train"] + argv + ["--save-dir", str(cut),
                                                                    "--resume"],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert p.returncode == 0, p.stderr
    assert "continuing with epoch 2 of 3" in p.stderr
    a, b = _params(ref / "ckpt-epoch0003.params"), _params(cut / "ckpt-epoch0003.params")
    assert sorted(a) == sorted(b)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    la = list(csv.DictReader(open(ref / "log.csv")))
    lb = list(csv.DictReader(open(cut / "log.csv")))
    assert [r["train_loss"] for r in la] == [r["train_loss"] for r in lb]
    assert [r["val_acc"] for r in la] == [r["val_acc"] for r in lb]


def test_resume_rejects_other_model(tmp_path, capsys):
    rc, err = _run(capsys, BASE + ["--epochs", "1", "--save-dir", str(tmp_path)])
    assert rc == 0, err
    other = TINY.replace("growth_rate=16", "growth_rate=32")
    rc, err = _run(capsys, ["--model", other] + BASE[2:] + ["--epochs", "1", "--save-dir",
                                                            str(tmp_path), "--resume"])
    assert rc == 2 and "--model" in err


def test_distillation_from_float_teacher(tmp_path, capsys):
    """--teacher: a float (binary=False) twin trained briefly guides the binary student.

    On fixed seeds (Hinton et al., "Distilling the Knowledge in a Neural Network", 2015):
    the student's KL divergence to the teacher on the held-out test images falls from
    epoch to epoch of distillation, and the distilled student ends closer to the teacher
    than the same student (same seed, same schedule) trained on the labels alone."""
    import shutil
    import warnings
    teacher_dir = tmp_path / "teacher"
    rc, err = _run(capsys, BASE + ["--float-twin", "--epochs", "8", "--lr", "0.01", "--seed", "0",
                                   "--no-test", "--save-dir", str(teacher_dir)])
    assert rc == 0, err
    t_params = str(teacher_dir / "best.params")
    student = BASE + ["--epochs", "4", "--lr", "0.02", "--seed", "1", "--no-test"]
    T = 4.0  # distillation temperature; the KL below is measured at the same temperature
    kept = []

    def keep_epoch_params(epoch, batch):  # before epoch e's first step: epoch e-1's checkpoint
        if batch == 0 and epoch > 0:
            src = tmp_path / "s" / f"ckpt-epoch{epoch:04d}.params"
            shutil.copy(src, tmp_path / f"distilled-epoch{epoch}.params")
            kept.append(tmp_path / f"distilled-epoch{epoch}.params")
    rc, err = _run(capsys, student + ["--save-dir", str(tmp_path / "s"), "--teacher", TINY,
                                      "--teacher-params", t_params, "--distill-alpha", "0.9",
                                      "--distill-temperature", str(T)],
                   hooks=_Hooks(on_batch=keep_epoch_params))
    assert rc == 0, err
    rows = list(csv.DictReader(open(tmp_path / "s" / "log.csv")))
    assert len(rows) == 4 and all(math.isfinite(float(r["train_loss"])) for r in rows)
    kept.append(tmp_path / "s" / "ckpt-epoch0004.params")
    rc, err = _run(capsys, student + ["--save-dir", str(tmp_path / "plain")])
    assert rc == 0, err

    kl = _distill_kl(TINY, t_params, kept + [tmp_path / "plain" / "ckpt-epoch0004.params"], T)
    distilled, plain = kl[:-1], kl[-1]
    with capsys.disabled():
        print(f"\n[distillation] KL(teacher || student) at T={T:g} on the test split after "
              f"epochs 1..4: {', '.join(f'{v:.4f}' for v in distilled)}; without the teacher: "
              f"{plain:.4f}")
    # Falls: the last epoch well below the first (the cosine schedule's last steps are
    # small, so two neighbouring epochs may be close; compare the ends).
    assert distilled[-1] < 0.8 * distilled[0], distilled
    assert all(b < a * 1.05 for a, b in zip(distilled, distilled[1:])), distilled
    # Closer than the label-only student of the same seed and schedule (measured: 0.64x)
    assert distilled[-1] < 0.85 * plain, (distilled[-1], plain)

    # a teacher whose parameters do not fit is refused with exit code 2
    rc, err = _run(capsys, BASE + ["--epochs", "1", "--save-dir", str(tmp_path / "s2"),
                                   "--teacher", TINY.replace("growth_rate=16", "growth_rate=8"),
                                   "--teacher-params", t_params])
    assert rc == 2 and "does not fit" in err
    # an exported float model works as teacher as well
    net = bt.build_model(TINY, 10, stem="thumbnail", binary=False)
    net.load_parameters(t_params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        net.hybridize()
        net(mx.nd.zeros((1, 1, 8, 8)))
        net.export(str(teacher_dir / "float"))
    rc, err = _run(capsys, BASE + ["--epochs", "1", "--save-dir", str(tmp_path / "s3"),
                                   "--teacher", str(teacher_dir / "float-symbol.json"),
                                   "--teacher-params", str(teacher_dir / "float-0000.params")])
    assert rc == 0, err


def _distill_kl(spec, teacher_params, student_params, T=1.0):
    """Mean KL(teacher || student) of the softmax at temperature ``T`` over the digits test
    split, for each student parameter file."""
    from bmx.data import get_dataset
    ds = get_dataset("digits", image_size=8)
    teacher = bt.build_teacher(spec, teacher_params, ds.num_classes, ds.image_shape, stem="thumbnail")
    xs = [x for x, _ in ds.test_batches(256)]
    p_t = [mx.nd.softmax(teacher(mx.nd.array(x)) / T).asnumpy().astype(np.float64) for x in xs]
    out = []
    for f in student_params:
        net = bt.build_model(spec, ds.num_classes, stem="thumbnail")
        net.load_parameters(str(f))
        kl, n = 0.0, 0
        for x, pt in zip(xs, p_t):
            log_ps = mx.nd.log_softmax(net(mx.nd.array(x)) / T).asnumpy().astype(np.float64)
            kl += float((pt * (np.log(np.maximum(pt, 1e-30)) - log_ps)).sum())
            n += len(x)
        out.append(kl / n)
    return out


def test_sgd_step_schedule_and_kbit(tmp_path, capsys):
    rc, err = _run(capsys, BASE + ["--epochs", "2", "--optimizer", "sgd", "--lr", "0.05",
                                   "--lr-mode", "step", "--lr-steps", "1", "--wd", "1e-4",
                                   "--bits", "2", "--bits-a", "2", "--save-dir",
                                   str(tmp_path)])
    assert rc == 0, err
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert float(rows[0]["lr"]) == pytest.approx(0.05)
    assert float(rows[1]["lr"]) == pytest.approx(0.005)


@pytest.mark.parametrize("dataset", ["mnist", "cifar10", "imagefolder", "synthetic"])
def test_trains_on_every_reader(tmp_path, capsys, dataset):
    """One short epoch on each reader (files written in the real formats by test_data)."""
    from test_data import _write_cifar, _write_images, _write_mnist
    extra = []
    if dataset == "mnist":
        _write_mnist(str(tmp_path), n_train=40, n_test=10)
    elif dataset == "cifar10":
        _write_cifar(str(tmp_path), per_batch=20)
    elif dataset == "imagefolder":
        _write_images(str(tmp_path), per_class=4)
        extra = ["--image-size", "16"]
    else:
        extra = ["--image-size", "8", "--classes", "4"]
    data = [] if dataset == "synthetic" else ["--data-dir", str(tmp_path)]
    out = tmp_path / "out"
    rc, err = _run(capsys, ["--model", TINY, "--dataset", dataset, "--epochs", "1",
                            "--batch-size", "16", "--quiet", "--no-plot", "--save-dir",
                            str(out)] + data + extra)
    assert rc == 0, err
    summ = json.load(open(out / "summary.json"))
    assert summ["stem"] == "thumbnail" and 0 <= summ["final_val_acc"] <= 1
    assert summ["classes"] == {"mnist": 10, "cifar10": 10, "imagefolder": 3, "synthetic": 4}[dataset]


def test_several_devices_per_worker(tmp_path):
    """--ctx with two devices (two CPU contexts here; GPUs in practice): the batch is split,
    gradients are summed by the kvstore, and both copies of every weight stay equal."""
    args = bt.parse_args(BASE + ["--epochs", "2", "--ctx", "cpu:0,1", "--kvstore", "device",
                                 "--save-dir", str(tmp_path)])
    summ = bt.train(args)
    net = summ.pop("net")
    for name, p in net.collect_params().items():
        if p.grad_req == "null":
            continue  # BatchNorm running statistics are per device, as in Gluon
        a, b = (p.data(mx.cpu(i)).asnumpy() for i in (0, 1))
        np.testing.assert_array_equal(a, b, err_msg=name)
    rows = list(csv.DictReader(open(tmp_path / "log.csv")))
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])


@pytest.mark.parametrize("argv, needle", [(["--ctx", "tpu"], "--ctx"),
                                          (["--ctx", "gpu:0,0"], "distinct"),
                                          (["--ctx", "gpu:7"], "GPU"),
                                          (["--ctx", "cpu:0,1", "--batch-size", "1"], "smaller")])
def test_bad_ctx(capsys, tmp_path, argv, needle):
    rc, err = _run(capsys, BASE + ["--save-dir", str(tmp_path)] + argv)
    assert rc == 2 and needle in err and len(err.strip().splitlines()) == 1
