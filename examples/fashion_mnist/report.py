"""Tables, plots and verdicts of the Fashion-MNIST ablation (``ablation.py``).

Bethge et al., "BinaryDenseNet" (2019) poster ablations: reads ``ablation.json`` and writes
``docs/results-ablation.md`` (one table per experiment beside the poster's ImageNet
numbers, and a verdict computed from the numbers) and ``docs/img/ablation-<exp>.png``
(mean +- std per configuration). Works on a partial file: missing runs are listed.

Verdicts compare the mean test accuracy (10,000 images, scored once per run) of the
configurations the poster ranks. A difference of means below the larger of the two
standard deviations (sample std over seeds) is "within noise"; with a single seed there is
no noise estimate and the verdict says so.

    nice -n 19 .venv/bin/python examples/fashion_mnist/report.py
"""
import argparse
import os
import statistics
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import ablation  # noqa: E402  (the experiment definitions, one source)

DEFAULT_MD = os.path.join(ablation.REPO, "docs", "results-ablation.md")
DEFAULT_IMG = os.path.join(ablation.REPO, "docs", "img")


class ReportError(Exception):
    """Bad input: one line, exit code 2."""


# ----------------------------------------------------------------------------- numbers
class Stat:
    """Mean and sample standard deviation (None below 2 values) of ``values``."""

    def __init__(self, values):
        self.values = [float(v) for v in values if v is not None]
        self.n = len(self.values)
        self.mean = statistics.fmean(self.values) if self.values else None
        self.std = statistics.stdev(self.values) if self.n >= 2 else None

    def pct(self, digits=2):
        """``'88.12 ± 0.31'`` in percent, ``'88.12 (1 seed)'``, or ``'–'``."""
        if self.mean is None:
            return "–"
        if self.std is None:
            return f"{100 * self.mean:.{digits}f} (1 seed)"
        return f"{100 * self.mean:.{digits}f} ± {100 * self.std:.{digits}f}"


def load(path):
    """Entries of ``path``; raises :class:`ReportError` for anything but a list of
    ablation entries."""
    data = ablation.read_json(path)
    if data is None:
        raise ReportError(f"cannot read {path} (missing or not JSON)")
    need = ("experiment", "config", "seed", "val_acc", "test_acc")
    if not isinstance(data, list) or not all(
            isinstance(e, dict) and all(k in e for k in need) for e in data):
        raise ReportError(f"{path} is not an ablation results file (a JSON list of entries "
                          f"with {', '.join(need)})")
    return data


def group(entries):
    """``{(experiment, config): [entries]}``; a repeated (experiment, config, seed) is an
    error (each run is recorded once)."""
    out, seen = {}, set()
    for e in entries:
        key = (e["experiment"], e["config"], e["seed"])
        if key in seen:
            raise ReportError(f"{key} is recorded twice")
        seen.add(key)
        out.setdefault((e["experiment"], e["config"]), []).append(e)
    return out


def config_stats(rows):
    """Stats of one configuration's entries."""
    return {"val": Stat(r["val_acc"] for r in rows), "test": Stat(r["test_acc"] for r in rows),
            "minutes": Stat(r.get("minutes") for r in rows),
            "size": Stat(r.get("model_size_bytes") for r in rows),
            "seeds": sorted(r["seed"] for r in rows)}


def compare(worse, better, kind, names):
    """One expected ordering -> (outcome, text). ``worse``/``better``: test-accuracy
    :class:`Stat`; outcome one of 'agrees', 'disagrees', 'within noise', None (no data)."""
    w, b = names
    if worse.mean is None or better.mean is None:
        return None, f"{b} vs {w}: not both measured yet"
    diff = 100 * (better.mean - worse.mean)
    stds = [s.std for s in (worse, better) if s.std is not None]
    noise = 100 * max(stds) if len(stds) == 2 else None
    if noise is not None and abs(diff) < noise:
        outcome = "agrees" if kind == "not_worse" else "within noise"
        why = (f"the difference is within noise, i.e. no loss (larger std {noise:.2f} pp)"
               if kind == "not_worse" else f"larger std {noise:.2f} pp")
    else:
        outcome = "agrees" if diff > 0 or (kind == "not_worse" and diff == 0) else "disagrees"
        why = ("no noise estimate (fewer than 2 seeds)" if noise is None
               else f"larger std {noise:.2f} pp")
    return outcome, f"{b} {'-' if diff < 0 else '+'}{abs(diff):.2f} pp vs {w}: {outcome}, {why}"


def verdict(exp, stats, planned):
    """The experiment's line: 'agrees', 'disagrees', 'within noise', 'partly agrees' or
    'no verdict yet', with the comparisons behind it; ``planned``: the configuration
    names expected (pairs with others, e.g. XNOR without --with-xnor, are left out)."""
    outcomes, texts = [], []
    for worse, better, kind in exp.pairs:
        if worse not in planned or better not in planned:
            continue
        s_w = stats.get(worse, {}).get("test", Stat([]))
        s_b = stats.get(better, {}).get("test", Stat([]))
        o, t = compare(s_w, s_b, kind, (worse, better))
        texts.append(t)
        if o is not None:
            outcomes.append(o)
    if not outcomes:
        word = "no verdict yet"
    elif all(o == outcomes[0] for o in outcomes):
        word = {"agrees": "agrees with the poster", "disagrees": "disagrees with the poster",
                "within noise": "within noise"}[outcomes[0]]
    elif "disagrees" in outcomes and "agrees" not in outcomes:
        word = "disagrees with the poster (partly within noise)"
    elif "agrees" in outcomes and "disagrees" not in outcomes:
        word = "agrees with the poster (partly within noise)"
    else:
        word = "partly agrees with the poster"
    return word, texts


# ----------------------------------------------------------------------------- plots
def plot_experiment(exp, configs, stats):
    """Figure of one experiment: left, our val and test accuracy (mean +- std, %) per
    configuration; right, the poster's ImageNet top-1 where it gives numbers."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    has_poster = any(c.poster for c in configs)
    fig, axes = plt.subplots(1, 2 if has_poster else 1, figsize=(10 if has_poster else 6, 4),
                             squeeze=False)
    ax = axes[0][0]
    names = [c.name for c in configs if c.name in stats]
    xs = list(range(len(names)))
    for off, key, label, fmt in ((-0.08, "val", "validation (best epoch)", "s"),
                                 (0.08, "test", "test (final model)", "o")):
        ys = [100 * stats[n][key].mean for n in names]
        es = [100 * (stats[n][key].std or 0.0) for n in names]
        ax.errorbar([x + off for x in xs], ys, yerr=es, fmt=fmt, capsize=4, label=label)
    ax.set_xticks(xs)
    ax.set_xticklabels(names)
    ax.set_ylabel("accuracy (%)")
    ax.set_title(f"({exp.key}) Fashion-MNIST, mean ± std over seeds", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if has_poster:
        ax2 = axes[0][1]
        pc = [c for c in configs if c.poster]
        series = []
        for c in pc:
            for s in c.poster:
                if s not in series:
                    series.append(s)
        for s in series:
            pts = [(i, c.poster[s]) for i, c in enumerate(pc) if s in c.poster]
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], "d-", label=s)
        ax2.set_xticks(range(len(pc)))
        ax2.set_xticklabels([c.name for c in pc])
        ax2.set_ylabel("ImageNet top-1 (%)")
        ax2.set_title("poster (ImageNet)", fontsize=10)
        ax2.grid(alpha=0.3)
        ax2.legend(fontsize=8)
    fig.suptitle(exp.title, fontsize=11)
    fig.tight_layout()
    return fig


def save_figure(fig, path):
    """Write ``fig`` as PNG through a temp file + os.replace."""
    import matplotlib.pyplot as plt
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".png", dir=d)
    os.close(fd)
    try:
        fig.savefig(tmp, format="png", dpi=100)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    finally:
        plt.close(fig)


# ----------------------------------------------------------------------------- report
def _cell(text):
    """A markdown table cell: a literal '|' would end it."""
    return str(text).replace("|", "\\|")


def _kib(stat):
    return "–" if stat.mean is None else f"{stat.mean / 1024:.1f}"


def _minutes(stat):
    return "–" if stat.mean is None else f"{stat.mean:.1f}"


def _poster_cell(c):
    nums = " / ".join(f"{v:g}%" for v in c.poster.values())
    if nums and c.poster_note:
        return f"{nums} ({c.poster_note})"
    return nums or c.poster_note or "–"


def experiment_section(exp, groups, seeds, with_xnor, img_rel):
    """Markdown of one experiment and its figure (None when it has no runs)."""
    configs = ablation.planned_configs(exp, with_xnor)
    stats = {c.name: config_stats(groups[(exp.key, c.name)]) for c in configs
             if (exp.key, c.name) in groups}
    lines = [f"### ({exp.key}) {exp.title}", "",
             "| config | what | seeds | val acc (%) | test acc (%) | size (KiB) | minutes "
             "| poster (ImageNet top-1) |",
             "|---|---|---|---|---|---|---|---|"]
    missing = []
    for c in configs:
        s = stats.get(c.name)
        have = s["seeds"] if s else []
        missing += [f"{c.name} seed {k}" for k in seeds if k not in have]
        if s is None:
            lines.append(f"| {c.name} | {_cell(c.label)} | 0 | missing | missing | – | – | "
                         f"{_cell(_poster_cell(c))} |")
            continue
        lines.append(f"| {c.name} | {_cell(c.label)} | {len(have)} | {s['val'].pct()} | "
                     f"{s['test'].pct()} | {_kib(s['size'])} | {_minutes(s['minutes'])} | "
                     f"{_cell(_poster_cell(c))} |")
    word, texts = verdict(exp, stats, {c.name for c in configs})
    lines += ["", f"Poster: {exp.claim}.", "",
              f"**Verdict: {word}.** " + ("; ".join(texts) + "." if texts else "")]
    if exp.size_tolerance is not None:
        sizes = [stats[n]["size"].mean for n in stats if stats[n]["size"].mean]
        if len(sizes) >= 2:
            spread = max(sizes) / min(sizes) - 1
            lines.append(f"Size spread {100 * spread:.1f}% (target within "
                         f"{100 * exp.size_tolerance:.0f}%).")
    if missing:
        lines.append(f"Missing runs: {', '.join(missing)}.")
    fig = None
    if stats:
        lines += ["", f"![({exp.key}) {exp.title}]({img_rel})"]
        fig = plot_experiment(exp, configs, stats)
    return "\n".join(lines) + "\n", fig


def protocol_text(entries):
    protos = {repr(sorted(e.get("protocol", {}).items())) for e in entries}
    if not entries:
        return "No runs recorded yet."
    p = entries[0].get("protocol", {})
    val = ("the last 5,000 training images" if p.get("val_split") is None
           else f"the last {p['val_split']:,} training images")
    txt = (f"Protocol: Fashion-MNIST, the first {p.get('train_images', '?'):,} training "
           f"images after holding out {val} for validation, {p.get('epochs')} epochs, batch "
           f"{p.get('batch_size')}, {p.get('optimizer')} lr {p.get('lr')} {p.get('lr_mode')}, "
           f"bmx-train's augmentation (2-px crop, flip). {p.get('reported', '')}. Sizes by "
           "the papers' rule (binary weights 1 bit, the rest 32 bit).")
    if len(protos) > 1:
        txt += " **Warning: the entries do not all share one protocol.**"
    return txt


def write_report(entries, md_path, img_dir, seeds=None, with_xnor=None, source=None):
    """Write the markdown and the PNGs; returns ``{experiment: png path or None}``."""
    groups = group(entries)
    if seeds is None:
        seeds = sorted({e["seed"] for e in entries}) or [0, 1]
    if with_xnor is None:
        with_xnor = any(e["config"] == "xnor" for e in entries)
    md_dir = os.path.dirname(os.path.abspath(md_path))
    parts = ["# Ablation study on Fashion-MNIST", "",
             "The BinaryDenseNet poster's ablations (ImageNet) redone at small scale with "
             "`examples/fashion_mnist/ablation.py`; generated by "
             "`examples/fashion_mnist/report.py`" + (f" from `{source}`" if source else "")
             + ". Do not edit by hand.", "",
             protocol_text(entries), "",
             f"Seeds expected: {', '.join(map(str, seeds))}. Accuracies are mean ± sample "
             "std over seeds. Verdicts compare mean test accuracy; a difference below the "
             "larger std is \"within noise\". The poster's numbers are ImageNet top-1 of far "
             "larger networks: compare orderings, not values.", ""]
    pngs = {}
    for key in sorted(ablation.EXPERIMENTS):
        exp = ablation.EXPERIMENTS[key]
        png = os.path.join(img_dir, f"ablation-{key}.png")
        rel = os.path.relpath(png, md_dir)
        text, fig = experiment_section(exp, groups, seeds, with_xnor, rel)
        parts.append(text)
        if fig is not None:
            save_figure(fig, png)
            pngs[key] = png
        else:
            pngs[key] = None
    unknown = sorted({k for k in groups if k[0] not in ablation.EXPERIMENTS or
                      k[1] not in {c.name for c in ablation.EXPERIMENTS[k[0]].configs}})
    if unknown:
        parts.append("Entries of no known experiment (ignored): "
                     + ", ".join(f"{e}/{c}" for e, c in unknown) + ".\n")
    d = os.path.dirname(os.path.abspath(md_path))
    os.makedirs(d, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".md", dir=d)
    with os.fdopen(fd, "w") as f:
        f.write("\n".join(parts))
    os.chmod(tmp, 0o644)
    os.replace(tmp, md_path)
    return pngs


def main(argv=None):
    p = argparse.ArgumentParser(description="Fashion-MNIST ablation report "
                                "(docs/results-ablation.md + docs/img/ablation-*.png).")
    p.add_argument("--json", default=ablation.DEFAULT_OUT, help="ablation.py's results")
    p.add_argument("--out", default=DEFAULT_MD, help="markdown file to write")
    p.add_argument("--img-dir", default=DEFAULT_IMG, help="where the PNGs go")
    p.add_argument("--seeds", nargs="+", type=int, default=None,
                   help="seeds expected (default: those in the file)")
    p.add_argument("--with-xnor", action="store_true", default=None,
                   help="expect the XNOR runs of g (default: if the file has any)")
    args = p.parse_args(argv)
    try:
        entries = load(args.json)
        rel = os.path.relpath(os.path.abspath(args.json), ablation.REPO)
        pngs = write_report(entries, args.out, args.img_dir, args.seeds, args.with_xnor,
                            source=rel if not rel.startswith("..") else args.json)
    except ReportError as e:
        print(f"report.py: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out} and {sum(1 for v in pngs.values() if v)} plot(s) in "
          f"{args.img_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
