"""Run the benchmark: this project against the libraries users would pick instead.

Every implementation runs as its own process (peers in their own virtual
environments under bench/.venvs/, made by bench/setup_peers.sh), on the same
IDX files, and prints one JSON line. Runs are interleaved (every job once per
repeat, in a rotating order) so that noise from a shared machine falls on all
alike, and each ratio is taken between two jobs of the same repeat.

    python bench/run.py                       # MNIST, 3 repeats, all peers
    python bench/run.py --dataset fashion-mnist
    python bench/run.py --quick               # 1 repeat, no Keras / MLPClassifier

A full run writes bench/results/<date>-<dataset>.json and regenerates
BENCHMARKS.md; a quick run writes bench/.work/quick-<dataset>.json and prints
the table only.
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from analysis import summarise
from render import render_dataset, write_benchmarks_md

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
VENVS = BENCH / ".venvs"

# SoftmaxRegression's fast mode: this solver at the estimator's default epochs
FAST_SOLVER = "adam"
FAST_EPOCHS = None


@dataclass
class Job:
    """One implementation: which environment, which script, which arguments."""

    name: str
    env: str  # "project" or a folder under bench/.venvs/
    script: str
    args: list = field(default_factory=list)
    quick: bool = True  # included in --quick
    timeout_s: int = 1800


JOBS = [
    Job("softmaxreg-mlp", "project", "project_mlp.py"),
    Job("keras", "keras", "peer_keras.py", quick=False),
    Job("pytorch", "torch", "peer_torch.py"),
    Job("sklearn-mlp", "sklearn", "peer_sklearn.py", ["--model", "mlp"], quick=False),
    Job("softmaxreg-lbfgs", "project", "project_estimator.py", ["--solver", "lbfgs"]),
    Job("sklearn-logreg", "sklearn", "peer_sklearn.py", ["--model", "logreg"]),
    Job(f"softmaxreg-{FAST_SOLVER}", "project", "project_estimator.py",
        ["--solver", FAST_SOLVER, "--epochs-override", str(FAST_EPOCHS or 0)]),
    Job("peak", "project", "peak_flops.py"),
]


def python_for(env):
    """Interpreter of an environment, or None when it has not been created."""
    if env == "project":
        return sys.executable
    python = VENVS / env / "bin" / "python"
    return str(python) if python.exists() else None


def command_for(job, args, seed):
    """The command line of one job, or None when its environment is missing."""
    python = python_for(job.env)
    if python is None:
        return None
    command = [python, str(BENCH / job.script)]
    if job.script == "peak_flops.py":
        return command
    extra = list(job.args)
    epochs = args.epochs
    if "--epochs-override" in extra:
        at = extra.index("--epochs-override")
        epochs = int(extra[at + 1]) or None  # 0: the script's own default
        del extra[at : at + 2]
    command += extra + ["--data-dir", str(args.data_dir), "--dataset", args.dataset,
                        "--seed", str(seed)]
    if epochs is not None:
        command += ["--epochs", str(epochs)]
    return command


def last_json_line(text):
    """The last line of ``text`` that parses as a JSON object, or None."""
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def wait_for_quiet(max_load, patience_s=180, poll_s=5):
    """Wait, up to ``patience_s``, for the 1-minute load average to fall below
    ``max_load``; return the load average when done waiting."""
    deadline = time.monotonic() + patience_s
    while os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        time.sleep(poll_s)
    return os.getloadavg()[0]


def run_job(job, args, seed):
    """Run one job in its own process and return its result dict."""
    load_before = wait_for_quiet(args.max_load) if args.max_load else os.getloadavg()[0]
    result = _run_process(job, args, seed)
    result["load_before"] = load_before
    result["load_after"] = os.getloadavg()[0]
    return result


def _run_process(job, args, seed):
    command = command_for(job, args, seed)
    if command is None:
        return {"name": job.name, "status": "unavailable",
                "reason": f"no environment bench/.venvs/{job.env}: "
                          f"run bench/setup_peers.sh {job.env}"}
    start = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True,
                              timeout=job.timeout_s, cwd=ROOT)
    except subprocess.TimeoutExpired:
        return {"name": job.name, "status": "failed",
                "reason": f"timed out after {job.timeout_s} s"}
    result = last_json_line(done.stdout)
    if done.returncode != 0 or result is None:
        tail = (done.stderr or done.stdout).strip().splitlines()[-6:]
        return {"name": job.name, "status": "failed",
                "reason": f"exit code {done.returncode}: " + " | ".join(tail)}
    result["name"] = job.name
    result["process_seconds"] = time.perf_counter() - start
    return result


def run_all(args, jobs):
    """Every job once per repeat, the order rotated each repeat."""
    runs = {job.name: [] for job in jobs}
    for repeat in range(args.repeats):
        seed = args.seed + repeat
        shift = repeat % len(jobs)
        for job in jobs[shift:] + jobs[:shift]:
            print(f"[repeat {repeat + 1}/{args.repeats}] {job.name} ...",
                  end=" ", flush=True)
            result = run_job(job, args, seed)
            result["repeat"] = repeat
            runs[job.name].append(result)
            print(describe(result), flush=True)
    return runs


def describe(result):
    """One short progress line for a finished job."""
    if result.get("status") != "ok":
        return f"{result.get('status')}: {result.get('reason', '')[:200]}"
    if result.get("name") == "peak":
        return f"{result['float32']['gflops']:.0f} GFLOP/s float32"
    parts = [f"fit {result['fit_seconds']:.2f} s"]
    if "test_accuracy" in result:
        parts.append(f"acc {100 * result['test_accuracy']:.2f}%")
    parts.append(f"rss {result['peak_rss_mib']:.0f} MiB")
    parts.append(f"load {result['load_before']:.1f}->{result['load_after']:.1f}")
    return ", ".join(parts)


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags():
    """The vector extensions that decide the arithmetic peak."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "unknown"
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines()
                      if line.startswith("flags")), []))
    wanted = ("avx2", "fma", "avx512f", "avx512_vnni", "amx_tile")
    return " ".join(f for f in wanted if f in flags) or "no AVX2"


def memory_gib():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:
        pass
    return None


def git_state():
    """Commit of the project under test and whether the tree had changes."""
    def git(*words):
        done = subprocess.run(["git", *words], capture_output=True, text=True,
                              cwd=ROOT)
        return done.stdout.strip() if done.returncode == 0 else None

    return {"commit": git("rev-parse", "HEAD"),
            "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


def machine_info():
    return {
        "cpu_model": cpu_model(),
        "cpu_flags": cpu_flags(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)),
        "memory_gib": memory_gib(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "load_average_start": os.getloadavg(),
    }


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--dataset", default="mnist",
                        choices=["mnist", "fashion-mnist"])
    parser.add_argument("--data-dir", type=Path,
                        default=os.environ.get("SOFTMAXREG_DATA"),
                        help="folder holding mnist/ and fashion-mnist/ "
                             "(default: $SOFTMAXREG_DATA)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-load", type=float, default=None,
                        help="before each job, wait (up to 3 min) for the 1-minute "
                             "load average to drop below this")
    parser.add_argument("--quick", action="store_true",
                        help="one repeat, Keras and MLPClassifier skipped")
    names = ", ".join(job.name for job in JOBS)
    parser.add_argument("--only", nargs="+", metavar="JOB",
                        help="run only these jobs (results go to bench/.work/): "
                             + names)
    parser.add_argument("--skip", nargs="+", metavar="JOB", default=[],
                        help="leave these jobs out of a full run (recorded in "
                             "the results)")
    args = parser.parse_args(argv)
    if args.data_dir is None:
        parser.error("--data-dir is required when SOFTMAXREG_DATA is unset")
    if not (args.data_dir / args.dataset).is_dir():
        parser.error(f"--data-dir: expected a folder containing {args.dataset}/, "
                     f"got {args.data_dir}")
    if args.quick:
        args.repeats = 1
    return args


def check_names(option, names):
    unknown = set(names) - {job.name for job in JOBS}
    if unknown:
        sys.exit(f"{option}: unknown job(s) {sorted(unknown)}; "
                 f"expected names from {[job.name for job in JOBS]}")


def select_jobs(args):
    jobs = [job for job in JOBS if job.quick or not args.quick]
    if args.only:
        check_names("--only", args.only)
        jobs = [job for job in JOBS if job.name in args.only]
    check_names("--skip", args.skip)
    return [job for job in jobs if job.name not in args.skip]


def main(argv=None):
    args = parse_args(argv)
    jobs = select_jobs(args)
    started = datetime.datetime.now(datetime.timezone.utc)
    machine = machine_info()
    runs = run_all(args, jobs)
    machine["load_average_end"] = os.getloadavg()

    report = {
        "dataset": args.dataset,
        "started_utc": started.isoformat(timespec="seconds"),
        "quick": args.quick,
        "repeats": args.repeats,
        "epochs": args.epochs,
        "fast_mode": {"solver": FAST_SOLVER, "epochs": FAST_EPOCHS},
        "skipped": sorted({job.name for job in JOBS} - {job.name for job in jobs}),
        "command": "python bench/run.py " + " ".join(sys.argv[1:] if argv is None
                                                      else argv),
        "machine": machine,
        "project": git_state(),
        "runs": runs,
    }
    report.update(summarise(report))

    if args.quick or args.only:
        out = BENCH / ".work" / f"quick-{args.dataset}.json"
    else:
        out = BENCH / "results" / f"{started:%Y-%m-%d}-{args.dataset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"\nwrote {out.relative_to(ROOT)}\n")
    print(render_dataset(report))
    if out.parent.name == "results":
        written = write_benchmarks_md(BENCH / "results", ROOT / "BENCHMARKS.md")
        print(f"regenerated {written.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
