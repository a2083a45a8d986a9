"""Render benchmark results (bench/results/*.json) as BENCHMARKS.md.

    python bench/render.py     # regenerate BENCHMARKS.md from the saved results

The latest full result per dataset is shown; bench/notes.md, written by hand,
is included as it stands.
"""

import json
from pathlib import Path

from analysis import summarise

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent

LABELS = {
    "softmaxreg-mlp": "**softmaxreg** `Sequential` MLP",
    "keras": "Keras 3 / TensorFlow (tutorial as written)",
    "pytorch": "PyTorch (CPU, hand-written loop)",
    "sklearn-mlp": "scikit-learn `MLPClassifier`",
    "softmaxreg-lbfgs": "**softmaxreg** `SoftmaxRegression` lbfgs",
    "sklearn-logreg": "scikit-learn `LogisticRegression` lbfgs",
}
PEER_NAMES = {"keras": "Keras", "pytorch": "PyTorch", "sklearn-mlp": "MLPClassifier",
              "sklearn-logreg": "LogisticRegression"}
DATASET_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}


def label(name):
    if name in LABELS:
        return LABELS[name]
    return f"**softmaxreg** `SoftmaxRegression` {name.split('-', 1)[1]} (fast mode)"


def spread(entry, scale=1.0, digits=2):
    """'median (min–max)' of a stats dict, or a dash."""
    if not entry:
        return "–"
    med, lo, hi = (entry[k] * scale for k in ("median", "min", "max"))
    if entry["n"] == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} ({lo:.{digits}f}–{hi:.{digits}f})"


def results_table(report):
    head = ("| implementation | s / epoch | best epoch s | fit s | test acc % "
            "| test log-loss | peak RSS MiB | predict 10k img/s "
            "| 1-image latency µs | process CPU s | load before |")
    lines = [head, "|" + "---|" * 11]
    for name, entry in report["summary"].items():
        if entry.get("status") != "ok":
            reason = entry.get("reason", "").replace("|", "/")[:160]
            status = entry.get("status")
            lines.append(f"| {label(name)} | {status}: {reason} ||||||||||")
            continue
        lines.append("| " + " | ".join([
            label(name),
            spread(entry.get("epoch_seconds"), digits=3),
            spread(entry.get("best_epoch_seconds"), digits=3),
            spread(entry.get("fit_seconds")),
            spread(entry.get("test_accuracy"), 100),
            spread(entry.get("test_log_loss"), digits=4),
            spread(entry.get("peak_rss_mib"), digits=0),
            spread(entry.get("images_per_s"), digits=0),
            spread(entry.get("latency_us"), digits=0),
            spread(entry.get("cpu_seconds"), digits=1),
            spread(entry.get("load_before"), digits=1),
        ]) + " |")
    return "\n".join(lines)


def ratio_table(report):
    lines = ["| pair (project / peer, same repeat) | metric "
             "| ratio median (min–max) |",
             "|---|---|---|"]
    for key, entry in report["ratios"].items():
        pair, metric = key.split(":")
        lines.append(f"| {pair} | {metric} | {spread(entry, digits=3)} |")
    return "\n".join(lines)


def arithmetic_section(report):
    arith = report["arithmetic"]
    peak = arith.get("peak")
    lines = [
        f"FLOPs counted as matrix products only (2 per multiply-add): the 784-128-10 "
        f"MLP costs {arith['mlp_gflop_per_epoch']:.2f} GFLOP per epoch on 60,000 "
        f"samples (forward, both weight gradients, the gradient into the hidden "
        f"layer); "
        f"one loss-and-gradient pass of softmax regression costs "
        f"{arith['softmax_gflop_per_pass']:.2f} GFLOP.",
        "",
    ]
    if peak:
        blas = ", ".join(f"{b.get('internal_api')} {b.get('version')} "
                         f"({b.get('architecture')}, {b.get('num_threads')} threads)"
                         for b in peak.get("blas") or [] if b.get("user_api") == "blas")
        lines += [f"Measured peak: {peak['float32_gflops']:.0f} GFLOP/s float32, "
                  f"{peak['float64_gflops']:.0f} GFLOP/s float64 "
                  f"({peak['n']}³ matrix product in NumPy, best of several; "
                  f"{blas}).", ""]
    lines += ["| implementation | GFLOP | seconds | GFLOP/s "
              "| fraction of float32 peak | basis |", "|---|---|---|---|---|---|"]
    for name, job in arith["jobs"].items():
        fraction = job.get("fraction_of_float32_peak")
        shown = "–" if fraction is None else f"{100 * fraction:.1f}%"
        lines.append(f"| {label(name)} | {job['gflop']:.2f} | {job['seconds']:.3f} | "
                     f"{job['gflops']:.1f} | {shown} | {job['basis']} |")
    return "\n".join(lines)


def targets_table(report):
    lines = ["| target | met | figure (medians) |", "|---|---|---|"]
    for target, verdict in report["targets"].items():
        met = {True: "yes", False: "**no**", None: "–"}[verdict["met"]]
        lines.append(f"| {target} | {met} | {verdict['figure']} |")
    return "\n".join(lines)


def times(speed):
    """'2.0x faster' / '1.5x slower' from a speed-up factor."""
    if speed >= 1:
        return f"{speed:.1f}x faster"
    return f"{1 / speed:.1f}x slower"


def standing(report):
    """One sentence per peer: how the project compares, from the paired medians."""
    ratios = report["ratios"]
    sentences = []
    for peer in ("keras", "pytorch", "sklearn-mlp"):
        time_ratio = (ratios.get(f"softmaxreg-mlp/{peer}:epoch_seconds") or {})
        rss = (ratios.get(f"softmaxreg-mlp/{peer}:peak_rss_mib") or {})
        if not time_ratio:
            continue
        speed = 1 / time_ratio["median"]
        best = ratios.get(f"softmaxreg-mlp/{peer}:best_epoch_seconds") or {}
        sentences.append(
            f"- vs {PEER_NAMES[peer]}: {times(speed)} per epoch "
            f"({times(1 / best['median']) if best else '?'} comparing each run's "
            f"least-disturbed epochs), "
            f"{rss.get('median', float('nan')):.2f}x its peak memory.")
    fit = ratios.get("softmaxreg-lbfgs/sklearn-logreg:fit_seconds")
    obj = ratios.get("softmaxreg-lbfgs/sklearn-logreg:objective")
    reach = report.get("lbfgs_time_to_sklearn_objective") or {}
    if fit and obj:
        reached = (reach.get("ratio") or {}).get("median")
        if not reach:
            to_target = "time to its objective not measured"
        elif reach["never_reached"]:
            to_target = "never reached its objective (1e-4) in some repeats"
        else:
            to_target = f"reaches its objective (1e-4) in {reached:.2f}x its fit time"
        sentences.append(
            f"- vs LogisticRegression (lbfgs): {to_target}; whole fit "
            f"{fit['median']:.2f}x its fit time, final objective "
            f"{obj['median'] - 1:+.1e} relative to its own.")
    return "\n".join(sentences) or "(no paired results)"


def versions(report):
    """Library versions as reported by each job's own process."""
    seen = {}
    for results in report["runs"].values():
        for result in results:
            for lib, version in (result.get("versions") or {}).items():
                seen.setdefault(lib, set()).add(version)
    return ", ".join(f"{lib} {'/'.join(sorted(v))}" for lib, v in sorted(seen.items()))


def blas_lines(report):
    lines = []
    for name, results in report["runs"].items():
        good = [r for r in results if r.get("status") == "ok" and r.get("blas")]
        if not good:
            continue
        pools = "; ".join(f"{b.get('internal_api')} {b.get('version') or ''} "
                          f"{b.get('num_threads')} threads".strip()
                          for b in good[0]["blas"])
        lines.append(f"  - {name}: {pools}")
    return "\n".join(lines)


def render_dataset(report):
    machine = report["machine"]
    title = DATASET_TITLES.get(report["dataset"], report["dataset"])
    project = report.get("project", {})
    return "\n".join([
        f"## {title}",
        "",
        f"{report['repeats']} repeat(s), {report['epochs']} epochs, batch 32, started "
        f"{report['started_utc']}; project commit "
        f"`{(project.get('commit') or '?')[:10]}`"
        f"{' (uncommitted changes)' if project.get('dirty') else ''}. "
        f"Figures are median (min–max) over repeats."
        + (f" Not run: {', '.join(report['skipped'])}." if report.get("skipped")
           else ""),
        "",
        results_table(report),
        "",
        "### Where the project stands",
        "",
        standing(report),
        "",
        "### Targets",
        "",
        targets_table(report),
        "",
        "### Paired ratios",
        "",
        "Below 1 means the project is smaller/faster for times and memory, "
        "larger for images/s.",
        "",
        ratio_table(report),
        "",
        "### Arithmetic limit",
        "",
        arithmetic_section(report),
        "",
        "### Machine",
        "",
        f"- CPU: {machine['cpu_model']} ({machine.get('cpu_flags', '?')}), "
        f"{machine['usable_cpus']} usable of "
        f"{machine['logical_cpus']} logical CPUs, {machine['memory_gib']} GiB",
        f"- {machine['os']}, Python {machine['python']}",
        f"- load average at start / end: "
        f"{', '.join(f'{x:.2f}' for x in machine['load_average_start'])} / "
        f"{', '.join(f'{x:.2f}' for x in machine.get('load_average_end', []))}",
        f"- libraries: {versions(report)}",
        "- thread pools (threadpoolctl), per process:",
        blas_lines(report),
        f"- reproduce: `{report['command']}`",
        "",
    ])


def latest_results(results_dir):
    """The newest full result per dataset, by file name (date first)."""
    latest = {}
    for path in sorted(Path(results_dir).glob("*.json")):
        report = json.loads(path.read_text())
        report.update(summarise(report))  # derived figures follow analysis.py
        latest[report["dataset"]] = report
    return [latest[d] for d in ("mnist", "fashion-mnist") if d in latest] + [
        r for d, r in latest.items() if d not in ("mnist", "fashion-mnist")]


HEADER = """# Benchmarks

This file is generated by `bench/run.py` (or `python bench/render.py`) from
bench/results/*.json: edit bench/notes.md, not this file.

Reproduce everything with `make bench` (creates the peers' virtual environments
under bench/.venvs/, then runs MNIST and Fashion-MNIST with 3 repeats each), or
check a change in a few minutes with `make bench-quick`.

What runs: the tutorial's job (Flatten, Dense 128 ReLU, Dense 10 softmax, Adam,
sparse categorical cross-entropy, 5 epochs, batch 32) in this project, in Keras 3
on TensorFlow exactly as the tutorial writes it, in plain PyTorch on the CPU
(Adam lr 1e-3, eps 1e-7) and in scikit-learn's `MLPClassifier`; softmax regression
(C = 1) with this project's `SoftmaxRegression` (lbfgs, and the fast mode) and
scikit-learn's `LogisticRegression(solver="lbfgs", max_iter=100)`. Each runs in
its own process on the same IDX files and reports its own peak resident memory
(the whole process: interpreter, libraries, data). Accuracy and log-loss are on
the 10,000 test images.
"""


def write_benchmarks_md(results_dir, path):
    parts = [HEADER]
    notes = BENCH / "notes.md"
    if notes.exists():
        parts.append(notes.read_text().strip() + "\n")
    parts += [render_dataset(report) for report in latest_results(results_dir)]
    path = Path(path)
    path.write_text("\n".join(parts))
    return path


if __name__ == "__main__":
    written = write_benchmarks_md(BENCH / "results", ROOT / "BENCHMARKS.md")
    print(f"regenerated {written}")
