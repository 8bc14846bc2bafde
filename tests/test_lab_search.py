"""The lab's Optuna search: SQLite study, two worker processes, a kill, a re-run that continues the study."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time

import optuna
import pytest
from conftest import BIN, ROOT
from optuna.trial import TrialState

from apps.lab.search.space import SearchConfig
from apps.lab.search.storage import retried_trial_number
from apps.lab.spec import load_lab

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")
SEARCH = ROOT / "tests" / "configs" / "lab_search_tiny.yaml"


def trials(db) -> list:
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name="lab_search_tiny", storage=f"sqlite:///{db}").get_trials()


def test_search_space_and_bad_block(tmp_path):
    config = SearchConfig(load_lab(ROOT / "configs" / "lab" / "search.yaml"))
    assert (config.trials, config.direction, config.sampler, config.pruner) == (20, "maximize", "tpe", "median")
    trial = optuna.create_study().ask({"layers": optuna.distributions.IntDistribution(1, 3)})
    args = config.suggest(trial)
    sizes = args[args.index("--model.hidden_sizes") + 1]
    assert sizes == "[" + ",".join([str(trial.params["width"])] * trial.params["layers"]) + "]"
    assert args[args.index("--model.scheduler") + 1] in ("none", "cosine")
    bad = tmp_path / "bad.yaml"
    bad.write_text("base: configs/mnist.yaml\nsearch: {params: {model.lr: {low: 1, high: 0.1}}}\n")
    proc = subprocess.run(
        [str(BIN / "paradis-lab"), str(bad), "--runs-dir", str(tmp_path)], cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 2 and "search.params.model.lr must be" in proc.stderr


def test_search_resumes_after_a_kill_without_losing_or_repeating_trials(tmp_path):
    command = [str(BIN / "paradis-lab"), str(SEARCH), "--runs-dir", str(tmp_path), "--workers", "2"]
    db = tmp_path / "lab_search_tiny" / "study.db"
    first = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    workers = []
    while len(workers) < 2:
        line = first.stdout.readline()
        assert line, "paradis-lab ended before its workers started"
        workers += [int(pid) for pid in re.findall(r"search worker \d: pid (\d+)", line)]
    # Kill one worker while both run a trial and one trial has finished, then the whole command (a crash).
    deadline = time.monotonic() + 300
    while not (
        db.exists()
        and sum(t.state == TrialState.RUNNING and bool(t.params) for t in trials(db)) == 2
        and any(t.state == TrialState.COMPLETE or t.state == TrialState.PRUNED for t in trials(db))
    ):
        assert time.monotonic() < deadline and first.poll() is None, "no two running trials"
        time.sleep(0.5)
    os.kill(workers[0], signal.SIGKILL)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    before = trials(db)
    lost = [t for t in before if t.state == TrialState.RUNNING]
    finished = [t for t in before if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert lost and finished  # the killed worker's trial (and the other one's, unless it ended in between)
    finished_mtimes = {
        t.number: (tmp_path / "lab_search_tiny" / f"trial_{t.number:04d}" / "result.json").stat().st_mtime_ns
        for t in finished
    }

    # The same command again: the lost trials are failed (stale heartbeat) and their parameters run again.
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    after = trials(db)
    numbers = [t.number for t in after]
    assert len(numbers) == len(set(numbers)) and numbers == list(range(len(after)))  # no trial number repeats
    assert all(t.number > max(x.number for x in before) for t in after if t.number not in {x.number for x in before})
    done = [t for t in after if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]
    assert 4 <= len(done) <= 4 + 1  # the budget (2 workers may both start the last trial): nothing lost...
    for t in lost:
        assert after[t.number].state == TrialState.FAIL
        retries = [r for r in after if retried_trial_number(r) == t.number]
        assert len(retries) == 1 and retries[0] in done  # ...run again once
        # A worker may end its trial and ask the next one between our check and the kill: a trial lost before it
        # drew its parameters has none to repeat, its retry draws them.
        assert retries[0].params == t.params or not t.params
    for number, mtime in finished_mtimes.items():  # ...and nothing finished run twice
        assert (tmp_path / "lab_search_tiny" / f"trial_{number:04d}" / "result.json").stat().st_mtime_ns == mtime

    out = tmp_path / "lab_search_tiny"
    report = (out / "report.md").read_text()
    for png in ("optimization_history.png", "param_importances.png", "val_acc.png"):
        assert (out / png).stat().st_size > 5000 and f"]({png})" in report
    assert "## Best trials" in report and "run again as trial_" in report
    for t in done:  # every trial's command, with its sampled values
        commands = json.loads((out / f"trial_{t.number:04d}" / "result.json").read_text())["commands"]
        assert commands[0] in report and f"--model.scheduler {t.params['scheduler']}" in commands[0]
