"""The BinaryDenseNet poster's ablations at Fashion-MNIST scale.

Bethge et al., "BinaryDenseNet: Developing an Architecture for Binary Neural Networks"
(2019) and "Back to Simplicity: How to Train Accurate BNNs from Scratch?" (2019): the
poster's three techniques (remove bottlenecks, full-precision downsampling, more
connections), the gradient clipping threshold, training from scratch, scaling factors.
``report.py`` turns the results into ``docs/results-ablation.md``.

Protocol (the defaults; every entry of the output records its own ``protocol``)
--------------------------------------------------------------------------------
- Data: Fashion-MNIST (Debian's ``dataset-fashion-mnist``), 28x28, bmx-train's default
  augmentation for it (random crop after 2-px padding, horizontal flip). The last 5,000
  training images are the validation split; the network trains on the first 10,000 of
  the remaining ones (``--train-images 10000``); the 10,000 test images are scored once
  at the end of each run.
- Training: 10 epochs, batch 128, Adam, lr 0.005 with cosine decay to 0, He-normal init,
  no weight decay, bmx-train's defaults otherwise; seeds 0 and 1.
- Reported: ``val_acc`` is the best validation epoch (the epoch bmx-train selects,
  ``best.params``); ``test_acc`` is the test set scored with the final (last-epoch)
  model; ``minutes`` is the training time (sum of the epoch times, evaluation excluded).
- Baseline (the default flex model of bmx-train): ``binarydensenet_flex`` with
  block_config (2,2,2), growth 32, 32 stem channels, reduction 2, full-precision
  downsampling, no bottleneck, t_clip 1.3, no scaling, from scratch: 83.0 KiB by the
  papers' rule (binary weights 1 bit, the rest 32 bit). It is trained once per seed and
  recorded under every experiment that contains it (``shared_with``).

Experiments (sizes by :func:`bmx.summary` at 1x28x28)
-----------------------------------------------------
a. t_clip in {0.5, 1.0, 1.3, 1.5, 2.0} on the baseline.
b. More connections at about constant size, the analogue of the poster's 8x256 /
   16x128 / 32x64 (blocks x block size): dense layers per stage x growth 1x64, 2x32
   (baseline), 4x16. All three have transitions to 64 channels and 128 final channels;
   the stem width (48 / 32 / 16) evens out the sizes: 83.7 / 83.0 / 82.3 KiB (within 3%).
c. Downsampling at about equal size: binary transitions with low reduction (1, 1.25:
   96 and 128 channels, 42.2 KiB) vs full-precision transitions with high reduction
   (2.5: 32 and 32 channels, 43.8 KiB), 3.9% apart.
d. Bottleneck (BN -> sign -> binary 1x1 to bn_size x growth channels before the 3x3)
   vs none, bn_size 1. The layers' inputs here have 32-96 channels, so DenseNet's
   bn_size 4 (128 channels) would widen every input instead of narrowing it (and add 30%
   size); bn_size 1 (32 channels) narrows five of the six layers, which is what the
   poster argues against, at 78.3 KiB (-5.7%).
e. Dense (the baseline) vs residual shortcuts: ``resnete_flex`` with 3 blocks per stage,
   channels (32, 64, 96), thumbnail stem, full-precision downsampling: 84.8 KiB (+2.1%).
f. From scratch (the baseline) vs initialised from its trained float twin: the float twin
   (``--float-twin``, same seed) is trained first, then the binary network with
   ``--init-from <float twin run>/best.params``. The float twin is recorded too (the
   32-bit reference, 32-bit size).
g. Scaling factors from scratch: none (baseline) vs weight (per-channel mean|W|); XNOR
   (weight and input scaling; deployed by model format 2) only with ``--with-xnor``.

Runs
----
One ``bmx-train`` process per run (``sys.executable -m bmx.train``), in
``<runs-dir>/<experiment>/<config>/seed<k>`` (``<runs-dir>/shared/baseline/seed<k>`` for
the baseline), its output in ``train.log`` there. Seed-major order: every configuration
of seed 0 first, so a partial study already covers all of them. After every run the
finished entries are appended to ``--out`` (a JSON list; temp file + ``os.replace``).
Restarting skips the (experiment, config, seed) entries already there, records a run
whose directory already holds its finished result without training it again, and
continues a run whose directory has a ``checkpoint.json`` with ``--resume``.

Examples
--------
    nice -n 19 .venv/bin/python examples/fashion_mnist/ablation.py --dry-run
    nice -n 19 .venv/bin/python examples/fashion_mnist/ablation.py            # ~2.5 h
    nice -n 19 .venv/bin/python examples/fashion_mnist/ablation.py --experiments b c --seeds 0 1 2
"""
import argparse
import datetime
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_OUT = os.path.join(HERE, "ablation.json")
DEFAULT_RUNS_DIR = os.path.join(REPO, "runs", "ablation")

#: bmx-train's default ``--model`` (tests/test_ablation.py checks that they agree)
DEFAULT_MODEL = ("binarydensenet_flex:block_config=(2,2,2),growth_rate=32,init_features=32,"
                 "reduction=2")

#: the default protocol; ``--train-images``, ``--epochs``, ``--val-split`` override it
PROTOCOL = {
    "dataset": "fashion-mnist",
    "train_images": 10000,
    "val_split": None,          # None: bmx-train's default, the last 5,000 training images
    "epochs": 10,
    "batch_size": 128,
    "optimizer": "adam",
    "lr": 0.005,
    "lr_mode": "cosine",
    "augment": "default",       # fashion-mnist: random crop after 2-px padding, flip
    "stem": "thumbnail",        # bmx-train's choice for inputs under 50 px
    "reported": "val_acc: best validation epoch (best.params); test_acc: the test set "
                "scored once with the final (last-epoch) model; minutes: training time "
                "(sum of the epoch times, evaluation excluded)",
}
#: protocol keys that must agree between the runs of one ablation.json
PROTOCOL_KEYS = ("dataset", "train_images", "val_split", "epochs", "batch_size", "optimizer",
                 "lr", "lr_mode", "augment")
#: bmx-train arguments a run directory must have been made with to count as this run
_MATCH_ARGS = ("dataset", "model", "train_images", "val_split", "epochs", "batch_size",
               "optimizer", "lr", "lr_mode", "augment", "clip_threshold", "scaling",
               "float_twin", "init_from", "seed")

IMAGE_SHAPE = (1, 1, 28, 28)
NUM_TEST = 10000            # Fashion-MNIST's test set
DEFAULT_VAL = 5000          # bmx-train's default validation split for 60,000 images
IMAGES_PER_S = 400.0        # training throughput of the baseline measured on 2 cores
RUN_OVERHEAD_S = 20.0       # process start, MXNet import, data loading


@dataclass(frozen=True)
class Run:
    """What one bmx-train process trains (equal Runs are trained once per seed).

    ``init_from`` names the configuration of the same experiment whose ``best.params``
    initialise this run (the float twin); ``slug`` names the directory of a run shared by
    several experiments and takes no part in equality.
    """
    model: str = DEFAULT_MODEL
    clip_threshold: float = 1.3
    scaling: str = "none"
    float_twin: bool = False
    init_from: str = None
    slug: str = field(default="", compare=False)


BASELINE = Run(slug="baseline")


@dataclass(frozen=True)
class Config:
    """One configuration of an experiment: ``name`` (directory-safe), the run, a short
    description and the poster's ImageNet top-1 figures for its analogue
    (``{series: percent}``; empty where the poster gives no number)."""
    name: str
    run: Run
    label: str
    poster: dict = field(default_factory=dict, compare=False, hash=False)
    poster_note: str = ""
    optional: str = None     # the CLI flag that enables it (None: always planned)


@dataclass(frozen=True)
class Experiment:
    """An ablation: its configurations, the poster's claim and the comparisons that test it.

    ``pairs``: ``(worse, better, kind)``; kind ``'better'``: the poster expects ``better``
    to beat ``worse``; ``'not_worse'``: it expects ``better`` to be at least as good.
    ``size_tolerance``: the largest relative size spread, (max - min) / min, of the
    configurations (None: size is not held constant).
    """
    key: str
    title: str
    configs: tuple
    claim: str
    pairs: tuple
    size_tolerance: float = None

    def config(self, name):
        for c in self.configs:
            if c.name == name:
                return c
        raise KeyError(name)


def _flex(**kw):
    """A ``binarydensenet_flex`` spec: the baseline's options overridden by ``kw``."""
    opts = {"block_config": "(2,2,2)", "growth_rate": "32", "init_features": "32",
            "reduction": "2"}
    opts.update({k: str(v) for k, v in kw.items()})
    return "binarydensenet_flex:" + ",".join(f"{k}={v}" for k, v in opts.items())


EXPERIMENTS = {e.key: e for e in (
    Experiment(
        "a", "Gradient clipping threshold t_clip",
        tuple(Config(f"tclip{t}", BASELINE if t == 1.3 else Run(clip_threshold=t),
                     f"t_clip = {t}" + (" (baseline)" if t == 1.3 else ""),
                     poster_note={1.0: "the usual choice; 'not optimal'",
                                  1.3: "within 1.25-1.5, 'performing better'",
                                  1.5: "within 1.25-1.5, 'performing better'"}.get(t, ""))
              for t in (0.5, 1.0, 1.3, 1.5, 2.0)),
        "t_clip = 1 is not optimal; 1.25 to 1.5 perform better (no numbers on the poster)",
        (("tclip1.0", "tclip1.3", "better"), ("tclip1.0", "tclip1.5", "better"))),
    Experiment(
        "b", "More connections at about constant size (dense layers per stage x growth)",
        (Config("1x64", Run(model=_flex(block_config="(1,1,1)", growth_rate=64,
                                        init_features=48)),
                "1 layer x 64 per stage, stem 48", {"ImageNet top-1": 50.2}, "8 x 256, 3.31 MB"),
         Config("2x32", BASELINE, "2 layers x 32 per stage (baseline)",
                {"ImageNet top-1": 52.7}, "16 x 128, 3.39 MB"),
         Config("4x16", Run(model=_flex(block_config="(4,4,4)", growth_rate=16,
                                        init_features=16, reduction="(1.5,2)")),
                "4 layers x 16 per stage, stem 16", {"ImageNet top-1": 54.3},
                "32 x 64, 3.45 MB")),
        "doubling the blocks while halving their size improves accuracy at about the same "
        "size: 8x256 / 16x128 / 32x64 give 50.2 / 52.7 / 54.3% at 3.31 / 3.39 / 3.45 MB",
        (("1x64", "2x32", "better"), ("2x32", "4x16", "better")), size_tolerance=0.03),
    Experiment(
        "c", "Downsampling: binary with low reduction vs full precision with high reduction",
        (Config("binary-low", Run(model=_flex(reduction="(1,1.25)", downsample="'binary'")),
                "binary transitions, reduction 1 / 1.25 (96, 128 channels)",
                {"16x128": 52.7, "32x64": 54.3}, "binary, low: 3.39 / 3.45 MB"),
         Config("fp-high", Run(model=_flex(reduction=2.5)),
                "full-precision transitions, reduction 2.5 (32, 32 channels)",
                {"16x128": 55.9, "32x64": 57.1}, "FP, high: 3.03 / 3.08 MB")),
        "full-precision downsampling with a high reduction beats binary downsampling with a "
        "low one at a smaller size: 55.9 / 57.1% (3.03 / 3.08 MB) vs 52.7 / 54.3% "
        "(3.39 / 3.45 MB)",
        (("binary-low", "fp-high", "better"),), size_tolerance=0.05),
    Experiment(
        "d", "Bottleneck vs no bottleneck",
        (Config("no-bottleneck", BASELINE, "3x3 binary conv only (baseline)"),
         Config("bottleneck", Run(model=_flex(bottleneck=True, bn_size=1)),
                "binary 1x1 to 32 channels before the 3x3 (bn_size 1)")),
        "remove bottlenecks: they reduce information (no numbers on the poster)",
        (("bottleneck", "no-bottleneck", "better"),)),
    Experiment(
        "e", "Dense vs residual shortcuts at about equal size",
        (Config("dense", BASELINE, "BinaryDenseNet flex (baseline)",
                {"~4.0 MB": 59.4}, "BinaryDenseNet-21"),
         Config("residual", Run(model="resnete_flex:layers=(3,3,3),channels=(32,64,96)"),
                "ResNetE flex, 3 blocks per stage, channels 32/64/96",
                {"~4.0 MB": 57.7}, "ResNetE-18")),
        "dense shortcuts reduce the information loss of binarization: BinaryDenseNet-21 "
        "59.4% vs ResNetE-18 57.7% at ~4.0 MB",
        (("residual", "dense", "better"),), size_tolerance=0.05),
    Experiment(
        "f", "From scratch vs initialised from the trained float twin",
        (Config("float-twin", Run(float_twin=True),
                "the same network with 32-bit layers (reference)"),
         Config("from-float", Run(init_from="float-twin"),
                "binary, initialised from the float twin's best.params"),
         Config("scratch", BASELINE, "binary, from scratch (baseline)")),
        "binary networks can be trained directly from scratch, without fine-tuning a "
        "full-precision model (no numbers on the poster)",
        (("from-float", "scratch", "not_worse"),)),
    Experiment(
        "g", "Scaling factors, from scratch",
        (Config("none", BASELINE, "no scaling (baseline)", {"ResNetE-18": 56.7}, "ResNetE-18"),
         Config("weight", Run(scaling="weight"), "per-channel mean|W| weight scaling",
                {"ResNetE-18": 55.6}, "ResNetE-18"),
         Config("xnor", Run(scaling="xnor"), "XNOR-Net weight and input scaling",
                optional="--with-xnor")),
        "scaling factors hurt when training from scratch: ResNetE-18 56.7% without vs "
        "55.6% with",
        (("weight", "none", "better"), ("xnor", "none", "better"))),
)}


def _shared_runs():
    """Runs that appear in more than one experiment (over the full plan) -> the keys."""
    users = {}
    for e in EXPERIMENTS.values():
        for c in e.configs:
            users.setdefault(c.run, [])
            if e.key not in users[c.run]:
                users[c.run].append(e.key)
    return {r: ks for r, ks in users.items() if len(ks) > 1}


def run_home(exp_key, config):
    """Directory of (experiment, config) relative to the runs dir, without the seed: a run
    shared by several experiments lives in ``shared/<slug>`` whatever subset is run."""
    shared = _shared_runs()
    if config.run in shared:
        if not config.run.slug:
            raise ValueError(f"run of {exp_key}/{config.name} is shared but has no slug")
        return os.path.join("shared", config.run.slug)
    return os.path.join(exp_key, config.name)


def shared_with(exp_key, config):
    """The other experiments that record the run of (experiment, config)."""
    return [k for k in _shared_runs().get(config.run, []) if k != exp_key]


def planned_configs(exp, with_xnor=False):
    """The configurations of ``exp`` that the plan trains."""
    return [c for c in exp.configs if c.optional is None
            or (c.optional == "--with-xnor" and with_xnor)]


@dataclass
class PlannedRun:
    """One bmx-train process of the plan: a run, a seed, its directory and the
    (experiment, config) entries it provides."""
    run: Run
    seed: int
    rel_dir: str
    users: list      # [(experiment key, Config)]
    depends_on: str = None   # rel_dir of the run whose best.params initialise this one


def build_plan(experiments, seeds, with_xnor=False, configs=None):
    """Seed-major list of :class:`PlannedRun`, each equal run once per seed, a float twin
    before the run initialised from it. ``configs``: only these ``"exp/config"`` names
    (and the float twins they are initialised from)."""
    plan = []
    for seed in seeds:
        index = {}
        for key in experiments:
            exp = EXPERIMENTS[key]
            wanted = _with_dependencies(exp, key, configs)
            for c in planned_configs(exp, with_xnor):
                if wanted is not None and c.name not in wanted:
                    continue
                rel = os.path.join(run_home(key, c), f"seed{seed}")
                if rel not in index:
                    dep = None
                    if c.run.init_from is not None:
                        dep = os.path.join(run_home(key, exp.config(c.run.init_from)),
                                           f"seed{seed}")
                    index[rel] = PlannedRun(c.run, seed, rel, [], dep)
                    plan.append(index[rel])
                index[rel].users.append((key, c))
    return plan


def _with_dependencies(exp, key, configs):
    """The config names of ``exp`` selected by ``configs`` (None: all), with the configs
    they are initialised from."""
    if configs is None:
        return None
    names = {c.split("/", 1)[1] for c in configs if c.split("/", 1)[0] == key}
    return names | {exp.config(n).run.init_from for n in names
                    if exp.config(n).run.init_from is not None}


def command(pr, protocol, runs_dir, resume=False):
    """The bmx-train command line of ``pr`` (``cmd[3:]`` are bmx-train's arguments)."""
    run = pr.run
    cmd = [sys.executable, "-m", "bmx.train",
           "--dataset", protocol["dataset"], "--model", run.model,
           "--train-images", str(protocol["train_images"]),
           "--epochs", str(protocol["epochs"]), "--batch-size", str(protocol["batch_size"]),
           "--optimizer", protocol["optimizer"], "--lr", repr(protocol["lr"]),
           "--lr-mode", protocol["lr_mode"], "--augment", protocol["augment"],
           "--clip-threshold", repr(run.clip_threshold), "--scaling", run.scaling,
           "--seed", str(pr.seed), "--save-dir", os.path.join(runs_dir, pr.rel_dir)]
    if protocol["val_split"] is not None:
        cmd += ["--val-split", str(protocol["val_split"])]
    if run.float_twin:
        cmd.append("--float-twin")
    if pr.depends_on is not None:
        cmd += ["--init-from", os.path.join(runs_dir, pr.depends_on, "best.params")]
    if resume:
        cmd.append("--resume")
    return cmd


# ----------------------------------------------------------------------------- sizes
def model_stats(run):
    """Size and operations of ``run``'s network at 1x28x28 (``bmx.summary``, the papers'
    rule: binary weights 1 bit, the rest 32 bit; the float twin is all 32 bit)."""
    import bmx
    from bmx.train import build_model
    extra = {"binary": False} if run.float_twin else {}
    net = build_model(run.model, 10, stem=PROTOCOL["stem"], clip_threshold=run.clip_threshold,
                      scaling=run.scaling, **extra)
    s = bmx.summary(net, input_shape=IMAGE_SHAPE)
    return {"model_size_bytes": s.model_size_bytes, "binary_params": s.binary_params,
            "fp_params": s.fp_params, "bops": s.bops, "flops": s.flops, "ops": s.ops,
            "macs": s.bops + s.flops + s.classifier_macs}


def estimate_seconds(macs, base_macs, protocol, images_per_s=IMAGES_PER_S, fraction=1.0):
    """Rough run time: training images at ``images_per_s`` scaled by the MACs relative to
    the baseline, plus evaluations (a forward pass, ~1/3 of a training step) and start-up."""
    val = DEFAULT_VAL if protocol["val_split"] is None else protocol["val_split"]
    work = protocol["epochs"] * (protocol["train_images"] + val / 3) + NUM_TEST / 3
    return RUN_OVERHEAD_S + fraction * work / (images_per_s * base_macs / max(macs, 1))


# ----------------------------------------------------------------------------- files
def read_json(path):
    """The JSON value in ``path``, or None when the file is missing or unreadable."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def write_json_atomic(path, obj):
    """Write ``obj`` to ``path`` through a temp file in the same directory + os.replace."""
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix="-" + os.path.basename(path), dir=d)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


class AblationError(Exception):
    """Bad input or a state the script will not overwrite: one line, exit code 2."""


def load_results(path, protocol):
    """Entries of ``path`` (a JSON list; [] when missing). Raises :class:`AblationError`
    for a file that is not a list of entries or holds runs of another protocol."""
    if not os.path.exists(path):
        return []
    data = read_json(path)
    if not isinstance(data, list) or not all(isinstance(e, dict) for e in data):
        raise AblationError(f"{path} is not an ablation results file (a JSON list of "
                            "entries); move it away or pass another --out")
    for e in data:
        old = e.get("protocol", {})
        diff = [f"{k} {old.get(k)!r} vs {protocol[k]!r}" for k in PROTOCOL_KEYS
                if old.get(k) != protocol[k]]
        if diff:
            raise AblationError(f"{path} holds runs of another protocol ({'; '.join(diff)}); "
                                "pass another --out (and --runs-dir) for this one")
    return data


def _same_path(a, b):
    if a is None or b is None:
        return a == b
    return os.path.realpath(a) == os.path.realpath(b)


def check_run_dir(pr, protocol, runs_dir):
    """Raise :class:`AblationError` when the run directory holds a run made with other
    settings (another protocol, model or seed): it is never overwritten."""
    d = os.path.join(runs_dir, pr.rel_dir)
    want = vars(_parse_train_args(command(pr, protocol, runs_dir)[3:]))
    for name in ("run.json", "checkpoint.json"):
        got = (read_json(os.path.join(d, name)) or {}).get("args")
        if not isinstance(got, dict):
            continue
        bad = [k for k in _MATCH_ARGS if not (
            _same_path(got.get(k), want[k]) if k == "init_from" else got.get(k) == want[k])]
        if bad:
            detail = "; ".join(f"--{k.replace('_', '-')} {got.get(k)!r} vs {want[k]!r}"
                               for k in bad)
            raise AblationError(f"{d} holds a run with other settings ({detail}); remove it "
                                "or pass another --runs-dir")


def _parse_train_args(argv):
    from bmx.train import build_parser
    return build_parser().parse_args(argv)


def run_state(pr, protocol, runs_dir):
    """``'done'`` (summary.json of all epochs), ``'resume'`` (a checkpoint), ``'stuck'``
    (all epochs checkpointed but no summary.json) or ``'new'``."""
    d = os.path.join(runs_dir, pr.rel_dir)
    ck = read_json(os.path.join(d, "checkpoint.json"))
    summ = read_json(os.path.join(d, "summary.json"))
    finished = isinstance(ck, dict) and int(ck.get("epoch", -1)) + 1 >= protocol["epochs"]
    if finished and isinstance(summ, dict) and summ.get("epochs") == protocol["epochs"]:
        return "done"
    if finished:
        return "stuck"
    return "resume" if isinstance(ck, dict) else "new"


def _epochs_done(pr, runs_dir):
    ck = read_json(os.path.join(runs_dir, pr.rel_dir, "checkpoint.json"))
    return int(ck.get("epoch", -1)) + 1 if isinstance(ck, dict) else 0


def train_one(pr, protocol, runs_dir, state):
    """Run bmx-train for ``pr`` (``--resume`` when ``state == 'resume'``); returns the wall
    seconds. Raises KeyboardInterrupt when bmx-train was interrupted (its checkpoint
    stays) and :class:`AblationError` when it failed."""
    d = os.path.join(runs_dir, pr.rel_dir)
    os.makedirs(d, exist_ok=True)
    cmd = command(pr, protocol, runs_dir, resume=state == "resume")
    log = os.path.join(d, "train.log")
    t0 = time.time()
    with open(log, "a") as f:
        f.write(f"\n# {datetime.datetime.now().isoformat(timespec='seconds')} "
                f"{' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=REPO)
        try:
            rc = proc.wait()
        except KeyboardInterrupt:
            # a terminal's Ctrl-C reaches bmx-train too; otherwise pass it on, so that it
            # stops at a clean point (it keeps the checkpoint of its last finished epoch)
            try:
                rc = proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=300)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            raise
    if rc == 130:
        raise KeyboardInterrupt
    if rc != 0:
        raise AblationError(f"bmx-train exited with code {rc}; see {log}")
    return time.time() - t0


def make_entries(pr, protocol, runs_dir, stats, wall_s, selected, done):
    """The new entries ``pr`` provides to the selected experiments."""
    d = os.path.join(runs_dir, pr.rel_dir)
    summ = read_json(os.path.join(d, "summary.json"))
    if not isinstance(summ, dict) or summ.get("best_val_acc") is None:
        raise AblationError(f"{d}/summary.json is missing or has no best_val_acc")
    argv = command(pr, protocol, runs_dir)[3:]
    rel = os.path.relpath(d, REPO)
    out = []
    for key, c in pr.users:
        if key not in selected or (key, c.name, pr.seed) in done:
            continue
        out.append({
            "experiment": key, "config": c.name, "seed": pr.seed,
            "val_acc": summ["best_val_acc"], "test_acc": summ.get("test_acc"),
            "epochs": summ.get("epochs"),
            "minutes": summ["train_time_s"] / 60 if summ.get("train_time_s") is not None
            else None,
            "model_size_bytes": stats["model_size_bytes"],
            "label": c.label, "model": pr.run.model, "train_args": argv,
            "run_dir": d if rel.startswith("..") else rel,
            "shared_with": shared_with(key, c),
            "best_epoch": summ.get("best_epoch"), "final_val_acc": summ.get("final_val_acc"),
            "num_train": summ.get("num_train"), "num_val": summ.get("num_val"),
            "num_test": summ.get("num_test"),
            "wall_minutes": None if wall_s is None else wall_s / 60,
            "binary_params": stats["binary_params"], "fp_params": stats["fp_params"],
            "bops": stats["bops"], "flops": stats["flops"], "ops": stats["ops"],
            "protocol": dict(protocol),
            "recorded": datetime.datetime.now().isoformat(timespec="seconds"),
        })
    return out


# ----------------------------------------------------------------------------- CLI
def build_parser():
    p = argparse.ArgumentParser(
        description="The BinaryDenseNet poster's ablations on Fashion-MNIST (resumable; "
                    "one bmx-train process per run).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--experiments", nargs="+", default=sorted(EXPERIMENTS),
                   choices=sorted(EXPERIMENTS), metavar="EXP",
                   help=f"subset of {', '.join(sorted(EXPERIMENTS))}")
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1], help="seeds to run")
    p.add_argument("--configs", nargs="+", default=None, metavar="EXP/CONFIG",
                   help="only these configurations (e.g. a/tclip0.5), with the runs they "
                        "are initialised from; default: every configuration")
    p.add_argument("--train-images", type=int, default=PROTOCOL["train_images"],
                   help="train on the first N training images")
    p.add_argument("--epochs", type=int, default=PROTOCOL["epochs"], help="epochs per run")
    p.add_argument("--val-split", type=int, default=None,
                   help="validation images (default: bmx-train's, the last 5,000)")
    p.add_argument("--out", default=DEFAULT_OUT, help="results (JSON list)")
    p.add_argument("--runs-dir", default=DEFAULT_RUNS_DIR, help="run directories")
    p.add_argument("--with-xnor", action="store_true",
                   help="add XNOR scaling to experiment g")
    p.add_argument("--dry-run", action="store_true",
                   help="print the plan with model sizes and estimated time; run nothing")
    p.add_argument("--images-per-s", type=float, default=IMAGES_PER_S,
                   help="training throughput of the baseline, for the time estimate")
    return p


def parse_args(argv=None):
    args = build_parser().parse_args(argv)
    for name in ("train_images", "epochs"):
        if getattr(args, name) < 1:
            raise AblationError(f"--{name.replace('_', '-')} must be >= 1")
    if args.val_split is not None and args.val_split < 1:
        raise AblationError("--val-split must be >= 1 (the best epoch is picked on it)")
    if any(s < 0 for s in args.seeds) or len(set(args.seeds)) != len(args.seeds):
        raise AblationError(f"--seeds must be distinct integers >= 0, got {args.seeds}")
    if not args.images_per_s > 0:
        raise AblationError("--images-per-s must be > 0")
    args.experiments = [k for k in sorted(EXPERIMENTS) if k in set(args.experiments)]
    for c in args.configs or []:
        key, _, name = c.partition("/")
        if key not in EXPERIMENTS or name not in {x.name for x in EXPERIMENTS[key].configs}:
            raise AblationError(f"--configs: no configuration {c!r} (write EXP/CONFIG, "
                                "e.g. a/tclip0.5; --dry-run lists them)")
    if args.configs:
        args.experiments = sorted({c.split("/", 1)[0] for c in args.configs})
    return args


def protocol_of(args):
    return dict(PROTOCOL, train_images=args.train_images, epochs=args.epochs,
                val_split=args.val_split)


def _fmt_min(s):
    return f"{s / 3600:.1f} h" if s >= 5400 else f"{s / 60:.0f} min"


def _lock(runs_dir):
    """Hold ``runs_dir/ablation.lock`` for the life of the process (one writer)."""
    import fcntl
    os.makedirs(runs_dir, exist_ok=True)
    f = open(os.path.join(runs_dir, "ablation.lock"), "w")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.close()
        raise AblationError(f"another ablation.py is running on {runs_dir}") from None
    return f


def main(argv=None):
    try:
        return _main(argv)
    except AblationError as e:
        print(f"ablation.py: error: {e}", file=sys.stderr)
        return 2


def _main(argv):
    args = parse_args(argv)
    protocol = protocol_of(args)
    runs_dir = os.path.abspath(args.runs_dir)
    out = os.path.abspath(args.out)
    lock = None if args.dry_run else _lock(runs_dir)
    entries = load_results(out, protocol)
    done = {(e["experiment"], e["config"], e["seed"]) for e in entries}
    plan = build_plan(args.experiments, args.seeds, args.with_xnor, args.configs)

    stats = {}
    for pr in plan:
        if pr.run not in stats:
            stats[pr.run] = model_stats(pr.run)
    base_macs = model_stats(BASELINE)["macs"] if BASELINE not in stats else \
        stats[BASELINE]["macs"]

    # the plan
    todo, est_total = [], 0.0
    print(f"ablation: experiments {' '.join(args.experiments)}, seeds "
          f"{' '.join(map(str, args.seeds))}; {protocol['train_images']} training images, "
          f"{protocol['epochs']} epochs, batch {protocol['batch_size']}, "
          f"{protocol['optimizer']} lr {protocol['lr']:g} {protocol['lr_mode']}")
    print(f"{'run':<34} {'size KiB':>9} {'state':>8} {'est.':>8}  recorded as")
    for pr in plan:
        need = [(k, c) for k, c in pr.users if (k, c.name, pr.seed) not in done]
        state = run_state(pr, protocol, runs_dir) if need else "recorded"
        est = 0.0
        if state in ("new", "resume"):
            frac = 1 - _epochs_done(pr, runs_dir) / protocol["epochs"]
            est = estimate_seconds(stats[pr.run]["macs"], base_macs, protocol,
                                   args.images_per_s, frac)
            todo.append(pr)
        est_total += est
        users = ", ".join(f"{k}/{c.name}" for k, c in pr.users)
        print(f"{pr.rel_dir:<34} {stats[pr.run]['model_size_bytes'] / 1024:9.1f} "
              f"{state:>8} {est / 60 if est else 0:7.1f}m  {users}")
    n_cfg = len({pr.run for pr in plan})
    print(f"{len(plan)} runs ({n_cfg} distinct configurations x {len(args.seeds)} seeds, the "
          f"baseline trained once per seed); {len(todo)} to train, estimated "
          f"{_fmt_min(est_total)} at ~{args.images_per_s:g} img/s for the baseline")
    if args.dry_run:
        return 0

    failures = []
    selected = set(args.experiments)
    try:
        for i, pr in enumerate(plan):
            if all((k, c.name, pr.seed) in done for k, c in pr.users if k in selected):
                continue
            try:
                if pr.depends_on is not None and run_state(
                        _dep(plan, pr), protocol, runs_dir) != "done":
                    raise AblationError(f"its float twin {pr.depends_on} did not finish")
                check_run_dir(pr, protocol, runs_dir)
                state = run_state(pr, protocol, runs_dir)
                wall = None
                if state == "stuck":
                    raise AblationError(
                        f"{os.path.join(runs_dir, pr.rel_dir)} finished its epochs but has no "
                        "summary.json (stopped while scoring the test set); remove it to "
                        "train it again")
                if state != "done":
                    print(f"[{i + 1}/{len(plan)}] {pr.rel_dir}: "
                          f"{'resuming' if state == 'resume' else 'training'} (log: "
                          f"{os.path.join(runs_dir, pr.rel_dir, 'train.log')})", flush=True)
                    wall = train_one(pr, protocol, runs_dir, state)
                new = make_entries(pr, protocol, runs_dir, stats[pr.run], wall, selected, done)
            except AblationError as e:
                failures.append(f"{pr.rel_dir}: {e}")
                print(f"[{i + 1}/{len(plan)}] {pr.rel_dir}: FAILED: {e}", file=sys.stderr,
                      flush=True)
                continue
            entries.extend(new)
            done.update((e["experiment"], e["config"], e["seed"]) for e in new)
            write_json_atomic(out, entries)
            e0 = new[0]
            fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
            mins = "?" if e0["minutes"] is None else f"{e0['minutes']:.1f}"
            print(f"[{i + 1}/{len(plan)}] {pr.rel_dir}: val {fmt(e0['val_acc'])} test "
                  f"{fmt(e0['test_acc'])}, {mins} min training"
                  f"{'' if wall is None else f', {wall / 60:.1f} min wall'}; recorded as "
                  f"{', '.join(e['experiment'] + '/' + e['config'] for e in new)}", flush=True)
    except KeyboardInterrupt:
        print("ablation.py: interrupted; finished runs are in "
              f"{out}, the current run keeps its checkpoint: run the same command again to "
              "continue", file=sys.stderr)
        return 130
    finally:
        if lock is not None:
            lock.close()
    if failures:
        print(f"ablation.py: {len(failures)} run(s) failed:\n  " + "\n  ".join(failures),
              file=sys.stderr)
        return 1
    print(f"ablation: all runs recorded in {out}")
    return 0


def _dep(plan, pr):
    for q in plan:
        if q.rel_dir == pr.depends_on:
            return q
    raise AblationError(f"{pr.rel_dir} depends on {pr.depends_on}, which is not planned")


if __name__ == "__main__":
    sys.exit(main())
