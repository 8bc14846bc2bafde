"""A lab file's `search:` block: an Optuna study over the ranges it names, instead of a fixed grid.

    search:
      trials: 20                 # budget: finished trials (complete, pruned or failed by an error)
      objective: val/acc         # per-epoch metric; a trial's value is its best epoch
      direction: maximize        # default: minimize for *loss*, else maximize
      sampler: tpe               # tpe (default) or random
      pruner: median             # median (default) or none: stop hopeless trials from per-epoch values
      startup_trials: 5          # trials before TPE and the pruner act
      heartbeat: 10              # seconds; a trial whose worker went silent for 3x this is retried
      params:
        model.lr: {low: 0.01, high: 0.3, log: true}      # float (int when low/high are ints and no log)
        model.scheduler: [none, cosine]                  # categorical
        model.hidden_sizes: {layers: [1, 2], width: [64, 256], log: true}   # [width] * layers

The study lives in `<runs-dir>/<axis>/study.db` (SQLite) or in `--storage URL` (any database Optuna's
RDB storage takes, e.g. PostgreSQL, so workers on several machines share one study; see
apps/lab/search/storage.py). Every worker (`--workers N` per machine) repeats: fail trials whose heartbeat
stopped (a killed worker; their parameters are queued again by `RetryHeartbeatStaleTrialCallback`), stop
when the budget is reached and no retry is queued, else run one trial (`study.optimize(n_trials=1)`, which keeps the trial's heartbeat). Re-running the same
command after a kill continues the study; trial numbers never repeat. As with Optuna's own `n_trials`,
workers that start their last trials at the same moment can finish up to `workers - 1` trials past the budget.
"""

from __future__ import annotations

import math
import platform
import time
from pathlib import Path

from apps.lab.search.space import SearchConfig
from apps.lab.spec import Lab, Variant

DB_FILE = "study.db"
POLL_S = 1.0  # how often a worker with nothing to start looks again (a cheap query): the search ends within a second


class RunFailed(Exception):
    """A trial's `paradis fit`/`test` failed (its error is in the trial's user attrs)."""


def default_storage(out_dir: Path) -> str:
    return f"sqlite:///{(out_dir / DB_FILE).resolve()}"


def make_sampler(config: SearchConfig, seed: int | None):
    import optuna

    if config.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=config.startup_trials)
    return optuna.samplers.RandomSampler(seed=seed)


def load_study(url: str, config: SearchConfig, seed: int | None, create: bool = False):
    import optuna

    from apps.lab.search.storage import make_storage

    kwargs = dict(
        study_name=config.study_name, storage=make_storage(url, config.heartbeat), sampler=make_sampler(config, seed)
    )
    if create:
        return optuna.create_study(direction=config.direction, load_if_exists=True, **kwargs)
    return optuna.load_study(**kwargs)


def finished_count(study) -> tuple[int, int, int]:
    """(finished, running, waiting): finished = complete + pruned + failed by an error (not a lost worker)."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    done = sum(
        t.state in (TrialState.COMPLETE, TrialState.PRUNED) or (t.state == TrialState.FAIL and "error" in t.user_attrs)
        for t in trials
    )
    return done, sum(t.state == TrialState.RUNNING for t in trials), sum(t.state == TrialState.WAITING for t in trials)


def objective_value(curve: list[float], direction: str) -> float:
    values = [v for v in curve if not math.isnan(v)]
    if not values:
        return math.nan
    return max(values) if direction == "maximize" else min(values)


def make_objective(
    lab: Lab, config: SearchConfig, out_dir: Path, url: str, extra: list[str], threads: int, isolated: bool, ctx
):
    import optuna

    from apps.lab.runner.pool import finish, plan, start
    from apps.lab.runner.results import read_metrics
    from apps.lab.search.space import PRUNED_FILE

    def objective(trial: optuna.Trial) -> float:
        args = config.suggest(trial)
        name = f"trial_{trial.number:04d}"
        run = plan(lab, Variant(name, args), out_dir / name, extra, None, threads)
        run.hidden_args = config.pruning_callback(url, trial.number)
        trial.set_user_attr("run_dir", str(run.run_dir))
        trial.set_user_attr("host", platform.node())
        trial.set_user_attr("commands", run.shown)
        started = time.perf_counter()
        process = start(run, isolated, ctx)
        process.join()
        result = finish(run, process.exitcode, time.perf_counter() - started)
        if result["status"] != "ok":
            trial.set_user_attr("error", result["error"])
            raise RunFailed(result["error"])
        epochs = read_metrics(run.run_dir).get("epochs", [])
        value = objective_value([e.get(config.objective, math.nan) for e in epochs], config.direction)
        trial.set_user_attr("test_acc", result["test_acc"])
        pruned = run.run_dir / PRUNED_FILE
        if pruned.exists():
            raise optuna.TrialPruned(f"pruned after epoch {pruned.read_text()}")
        if math.isnan(value):
            trial.set_user_attr("error", f"no {config.objective} was logged")
            raise RunFailed(f"no {config.objective} was logged")
        return value

    return objective


def worker(
    lab_path: str, out_dir: str, url: str, budget: int, extra: list[str], threads: int, isolated: bool, index: int
) -> None:
    """One worker process: trials until the study holds `budget` finished ones.

    Its trials are forked by a warm forkserver of its own, never by the worker itself: the worker runs
    Optuna's heartbeat thread, and a process with threads must not fork (a lock one of them holds would
    stay locked in the child forever)."""
    import multiprocessing
    import os
    import sys

    from apps.lab.runner.worker import die_with_parent, warm_context
    from apps.lab.spec import config_modules, load_lab

    die_with_parent()
    print(f"search worker {index}: pid {os.getpid()}", flush=True)
    lab = load_lab(lab_path)
    config = SearchConfig(lab)
    ctx = (
        multiprocessing.get_context("spawn")
        if isolated
        else warm_context(config_modules([lab]) + ["apps.lab.search.pruning"])
    )
    objective = make_objective(lab, config, Path(out_dir), url, extra, threads, isolated, ctx)
    from optuna.storages import fail_stale_trials

    from apps.lab.search.storage import stale_trials_guard

    study = load_study(url, config, None)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    while True:
        # On SQLite, Optuna's SELECT ... FOR UPDATE locks nothing, so two workers could both fail the same stale
        # trial and queue its retry twice (seen under load): a file lock. PostgreSQL's row lock does it itself.
        with stale_trials_guard(url, Path(out_dir)):
            fail_stale_trials(study)
        # A seed per worker and per trial, so workers (and a resumed study) do not replay one random sequence.
        seed = None if lab.seed is None else lab.seed * 1000 + index * 100003 + len(study.get_trials(deepcopy=False))
        study.sampler = make_sampler(config, seed)
        done, running, waiting = finished_count(study)
        if done >= budget and not waiting:  # a queued retry of a lost trial still runs: no trial is lost
            break
        if done + running >= budget and not waiting:
            time.sleep(POLL_S)  # the last trials are running elsewhere: wait until they end or go stale
            continue
        study.optimize(objective, n_trials=1, catch=(RunFailed,), gc_after_trial=False)
    sys.stdout.flush()


def run_search(lab: Lab, args, extra: list[str], threads: int, argv: list[str]) -> list[dict]:
    """Create or load the study, run `--workers` worker processes to the budget, write the report."""
    import multiprocessing

    from apps.lab.search.report import write_search_report
    from apps.lab.search.storage import claim_study, shown_url

    config = SearchConfig(lab)
    out_dir = Path(args.runs_dir) / lab.axis
    out_dir.mkdir(parents=True, exist_ok=True)
    url = args.storage or default_storage(out_dir)
    budget = config.trials = args.trials or config.trials
    study = load_study(url, config, lab.seed, create=True)
    claim_study(study, lab, config, url)
    done = finished_count(study)[0]
    print(
        f"paradis-lab: {lab.axis}: Optuna study `{config.study_name}` in {shown_url(url)}: {done}/{budget} trials finished; "
        f"{args.workers} worker(s) here",
        flush=True,
    )
    ctx = multiprocessing.get_context("spawn")  # a fresh interpreter: nothing of this process's database connection
    workers = [
        ctx.Process(target=worker, args=(str(lab.path), str(out_dir), url, budget, extra, threads, args.isolated, i))
        for i in range(args.workers)
    ]
    for process in workers:
        process.start()
    for process in workers:
        process.join()
    return write_search_report(lab, config, load_study(url, config, lab.seed), out_dir, argv, url)
