"""The `paradis-lab` command line: parse, run every lab file's runs in one pool, write the reports (`main` in
apps/lab/__init__.py turns its errors into exit codes)."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from apps.lab.runner.pool import Run, default_threads, execute, plan
from apps.lab.runner.report import write_report
from apps.lab.runner.table import markdown_table, summarize
from apps.lab.runner.worker import warm_context
from apps.lab.spec import Lab, config_modules, load_lab


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    parser = argparse.ArgumentParser(
        prog="paradis-lab",
        description="Run every variant of one or more lab axes (paradis fit + test each) and write a comparison report per axis (and course.md/course.html over all axes when several run).",
        epilog="Other --section.key value options are added to every paradis command, e.g. --trainer.max_epochs 2.",
    )
    parser.add_argument("labs", nargs="+", metavar="lab", help="lab file(s), e.g. configs/lab/activations.yaml")
    parser.add_argument("--folds", type=int, default=1, help="k-fold cross-validation: run each variant K times")
    parser.add_argument("--force", action="store_true", help="rerun finished variants too")
    parser.add_argument("--runs-dir", default="runs/lab", help="root of the lab run folders (default runs/lab)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time (default 1)")
    parser.add_argument(
        "--threads", type=int, default=None, help="intra-op threads per run (default: cores // jobs, at least 1)"
    )
    parser.add_argument(
        "--isolated", action="store_true", help="run the shown paradis commands as fresh processes (no warm worker)"
    )
    parser.add_argument("--workers", type=int, default=1, help="search: trials at a time on this machine (default 1)")
    parser.add_argument(
        "--storage",
        default=None,
        help="search: Optuna storage URL shared by several machines "
        "(e.g. postgresql://user:pw@host/db; default sqlite in the lab folder)",
    )
    parser.add_argument(
        "--trials", type=int, default=None, help="search: trial budget (default: the lab file's `trials`)"
    )
    args, extra = parser.parse_known_args(argv)
    bad = [a for a in extra if a.startswith("-") and not a.startswith("--")]
    if bad:
        parser.error(f"unknown option {bad[0]}; paradis-lab passes on only --section.key options.")
    for name in ("folds", "jobs", "workers"):
        if getattr(args, name) < 1:
            parser.error(f"--{name} must be at least 1, got {getattr(args, name)}.")
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}.")
    return args, extra


def progress(total: int):
    done = [0]

    def report(run: Run, result: dict) -> None:
        done[0] += 1
        where = f"[{done[0]}/{total}] {run.lab.axis}/{run.label}: "
        if result["status"] != "ok":
            print(f"{where}FAILED in {result['stage']}: {result['error']}", flush=True)
        elif result.get("skipped"):
            print(f"{where}finished earlier, read back (test acc {result['test_acc']:.4f})", flush=True)
        else:
            stale = (
                "command or base config changed since the last run: ran it again; "
                if getattr(run, "stale", False)
                else ""
            )
            print(
                f"{where}{stale}done in {result['wall_time_s']:.0f} s (test acc {result['test_acc']:.4f})", flush=True
            )

    return report


def lab_runs(lab: Lab, out_dir: Path, extra: list[str], folds: int, threads: int) -> list[Run]:
    fold_list = [None] if folds == 1 else [(i, folds) for i in range(folds)]
    return [
        plan(lab, variant, out_dir / variant.name / (f"fold{fold[0]}" if fold else ""), extra, fold, threads)
        for variant in lab.variants
        for fold in fold_list
    ]


def jobs_line(args: argparse.Namespace, threads: int) -> str:
    how = "fresh `paradis` processes (`--isolated`)" if args.isolated else "children of one warm worker"
    return f"runs: {how}, {args.jobs} at a time, {threads} intra-op thread(s) each"


def run_lab(argv: list[str]) -> list[dict]:
    """Every lab file named in `argv`; returns all table rows (of every lab)."""
    args, extra = parse_args(argv)
    labs = [load_lab(path) for path in args.labs]
    axes = [lab.axis for lab in labs]
    if len(set(axes)) < len(axes):
        raise ValueError(
            f"Two lab files have the same name ({', '.join(axes)}); their reports would overwrite each other."
        )
    threads = args.threads or default_threads(args.jobs)
    grids = [lab for lab in labs if lab.search is None]
    ctx = None if args.isolated or not grids else warm_context(config_modules(grids))
    runs_by_lab = {lab.axis: lab_runs(lab, Path(args.runs_dir) / lab.axis, extra, args.folds, threads) for lab in grids}
    all_runs = [run for runs in runs_by_lab.values() for run in runs]
    for lab in grids:
        (Path(args.runs_dir) / lab.axis).mkdir(parents=True, exist_ok=True)
        print(
            f"paradis-lab: {lab.axis}: {len(lab.variants)} variant(s) x {args.folds} fold(s) into {Path(args.runs_dir) / lab.axis}",
            flush=True,
        )
    started = time.perf_counter()
    results = execute(all_runs, args.jobs, args.force, args.isolated, ctx, progress(len(all_runs)))
    ran = [r for r in results if not r.get("skipped")]
    if ran:
        cpu = sum(r.get("cpu_time_s", 0.0) for r in ran)
        print(
            f"paradis-lab: {len(ran)} run(s) in {time.perf_counter() - started:.0f} s wall, {cpu:.0f} s CPU "
            f"(user + system of the runs themselves)",
            flush=True,
        )
    by_run = dict(zip(map(id, all_runs), results))
    rows_all = []
    for lab in grids:
        out_dir = Path(args.runs_dir) / lab.axis
        per_variant: dict[str, list[dict]] = {}
        for run in runs_by_lab[lab.axis]:
            per_variant.setdefault(run.variant.name, []).append(by_run[id(run)])
        rows = [summarize(name, runs) for name, runs in per_variant.items()]
        lab_argv = [str(lab.path), *argv_without_labs(argv, args.labs)]
        (out_dir / "results.json").write_text(
            json.dumps(
                {
                    "lab": str(lab.path),
                    "argv": lab_argv,
                    "description": lab.description,
                    "target_acc": lab.target_acc,
                    "folds": args.folds,
                    "rows": rows,
                    "runs": per_variant,
                },
                indent=1,
            )
        )
        report = write_report(lab, out_dir, rows, per_variant, lab_argv, args.folds, jobs_line(args, threads))
        print(f"\n{lab.axis}:\n{markdown_table(rows, lab.target_acc)}\n\nReport: {report}", flush=True)
        rows_all += rows
    for lab in labs:
        if lab.search is not None:
            from apps.lab.search.study import run_search

            search_threads = args.threads or default_threads(args.workers)  # one per worker when workers >= cores
            rows_all += run_search(
                lab, args, extra, search_threads, [str(lab.path), *argv_without_labs(argv, args.labs)]
            )
    course(Path(args.runs_dir), axes)
    return rows_all


def course(runs_dir: Path, axes: list[str]) -> None:
    """The course report over every axis in the lab folder: when several lab files ran, or to keep one up to date."""
    from apps.lab.course.report import COURSE_MD, write_course

    if len(axes) > 1 or (runs_dir / COURSE_MD).exists():
        written = write_course(runs_dir, axes)
        if written:
            print(f"\nCourse report (every axis in {runs_dir}): {' and '.join(map(str, written))}", flush=True)


def argv_without_labs(argv: list[str], labs: list[str]) -> list[str]:
    rest = list(argv)
    for lab in labs:
        rest.remove(lab)
    return rest
