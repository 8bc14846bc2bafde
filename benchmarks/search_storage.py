"""The lab's search on PostgreSQL against SQLite, side by side in one run: trials per minute with 2 workers on
2 "machines" (two `paradis-lab --workers 1` commands sharing a study on a throwaway PostgreSQL server, each in
its own UTS namespace with its own host name and lab folder) and with 2 workers of one command on the lab
folder's SQLite study. Same lab file, same budget, one intra-op thread per worker.

    python benchmarks/search_storage.py                        # tests/configs/lab_search_tiny.yaml, 12 trials
    python benchmarks/search_storage.py --trials 20 --lab configs/lab/search.yaml --out runs/bench/search_storage

Trials/minute = finished trials / (last trial's end - first trial's start), from the study itself (the
commands' start-up and reports are not in it); the wall time of the commands is printed beside it. Needs
PostgreSQL's initdb/pg_ctl/postgres on PATH and root (`unshare --uts`; the server runs as `nobody`).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from postgres_server import PostgresServer  # noqa: E402 - tests/postgres_server.py: the throwaway server


def lab_command(lab: str, trials: int, runs_dir: Path, workers: int, storage: str | None) -> list[str]:
    argv = [str(Path(sys.executable).parent / "paradis-lab"), lab, "--runs-dir", str(runs_dir), "--threads", "1"]
    argv += ["--trials", str(trials), "--workers", str(workers)]
    return argv + (["--storage", storage] if storage else [])


def run_all(commands: list[list[str]], logs: list[Path]) -> float:
    started = time.perf_counter()
    processes = []
    for argv, log in zip(commands, logs):
        with log.open("w") as out:
            processes.append(subprocess.Popen(argv, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT))
    for process, log in zip(processes, logs):
        if process.wait() != 0:
            raise SystemExit(f"{log} ended with {process.returncode}:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - started


def rate(url: str, name: str) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    trials = [t for t in optuna.load_study(study_name=name, storage=url).trials if t.state.is_finished()]
    span = (max(t.datetime_complete for t in trials) - min(t.datetime_start for t in trials)).total_seconds()
    hosts = sorted({t.user_attrs.get("host", "?") for t in trials})
    return {
        "trials": len(trials),
        "span_s": round(span, 1),
        "per_minute": round(60 * len(trials) / span, 2),
        "hosts": hosts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lab", default="tests/configs/lab_search_tiny.yaml")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--out", default=None, help="folder for the lab folders and logs (default: a temporary one)")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="search_storage_"))
    out.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(ROOT))
    from apps.lab.spec import load_lab

    name = load_lab(ROOT / args.lab).axis
    results = {}

    sqlite_dir = out / "sqlite"
    wall = run_all([lab_command(args.lab, args.trials, sqlite_dir, 2, None)], [out / "sqlite.log"])
    url = f"sqlite:///{(sqlite_dir / name / 'study.db').resolve()}"
    results["sqlite, 2 workers, 1 machine"] = {**rate(url, name), "wall_s": round(wall, 1)}

    server = PostgresServer(Path(tempfile.mkdtemp(prefix="pg_", dir=out)))
    try:
        url = server.start().database("bench")
        commands, logs = [], []
        for host in ("machine-a", "machine-b"):
            argv = lab_command(args.lab, args.trials, out / host, 1, url)
            commands.append(["unshare", "--uts", "sh", "-c", f'hostname {host} && exec "$@"', "sh", *argv])
            logs.append(out / f"{host}.log")
        wall = run_all(commands, logs)
        results["postgresql, 2 workers on 2 machines"] = {**rate(url, name), "wall_s": round(wall, 1)}
    finally:
        server.stop()

    print(json.dumps(results, indent=1))
    print("\n| storage | trials | trials/minute | trial span (s) | wall (s) |\n|---|---|---|---|---|")
    for what, r in results.items():
        print(f"| {what} | {r['trials']} | {r['per_minute']} | {r['span_s']} | {r['wall_s']} |")
    (out / "search_storage.json").write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
