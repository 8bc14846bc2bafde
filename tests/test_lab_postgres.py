"""The lab's search on a real PostgreSQL server (tests/postgres_server.py starts a throwaway one): two "machines"
on one study through a kill -9, the stale-trial race, the study as optuna-dashboard loads it, and bad input.

Two machines: two `paradis-lab` commands with their own lab folders, each in its own UTS and mount namespaces
(`unshare --uts --mount`, root): its own host name, and the other machine's lab folder hidden under an empty
tmpfs, as another machine's disk would be. The report's host is `platform.node()`, the kernel's node name, which
a UTS namespace really changes: nothing in the lab is told it is a test. Cost: four `paradis-lab` start-ups and
five tiny trials, about as much as tests/test_lab_search.py's kill test (226 s and 210 s in one run on 2 busy cores).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path

import optuna
import pytest
from conftest import BIN, ROOT
from optuna.trial import TrialState
from postgres_server import postgres_fixture  # noqa: F401 - the `postgres` fixture

from apps.lab.search.space import SearchConfig
from apps.lab.search.storage import FINGERPRINT_ATTR, claim_study, retried_trial_number
from apps.lab.search.study import load_study
from apps.lab.spec import load_lab

pytestmark = [
    pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning"),
    pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning"),
]
SEARCH = ROOT / "tests" / "configs" / "lab_search_tiny.yaml"
STUDY = "lab_search_tiny"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)


def trials(url: str) -> list:
    """The study's trials, loaded as optuna-dashboard loads a study: by name, from the URL."""
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    return optuna.load_study(study_name=STUDY, storage=url).get_trials()


def on_machine(host: str, argv: list[str], hidden: Path | None = None) -> list[str]:
    """`argv` as run on another machine: its own host name and, with `hidden`, a folder it cannot see (the other
    machine's disk: a private tmpfs mounted over it in its own mount namespace)."""
    hide = f" && mount -t tmpfs tmpfs {shlex.quote(str(hidden))}" if hidden else ""
    return ["unshare", "--uts", "--mount", "sh", "-c", f'hostname {host}{hide} && exec "$@"', "sh", *argv]


def namespaces() -> None:
    proc = subprocess.run(on_machine("machine-x", ["hostname"]), capture_output=True, text=True)
    if proc.stdout.strip() != "machine-x":
        reason = f"no UTS/mount namespace here for a second machine (`unshare` needs root): {proc.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)


def test_two_machines_share_one_study_through_a_kill(postgres, tmp_path):
    namespaces()
    url = postgres.database("two_machines")
    runs = {host: tmp_path / host for host in ("machine-a", "machine-b")}
    for folder in runs.values():
        folder.mkdir()

    def start(host: str, phase: int) -> subprocess.Popen:
        argv = [str(BIN / "paradis-lab"), str(SEARCH), "--storage", url, "--runs-dir", str(runs[host])]
        (other,) = set(runs) - {host}
        with (tmp_path / f"{host}-{phase}.log").open("w") as log:
            return subprocess.Popen(on_machine(host, argv, runs[other]), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)

    def output(host: str, phase: int) -> str:
        return (tmp_path / f"{host}-{phase}.log").read_text()

    def finish(process: subprocess.Popen, host: str, phase: int) -> None:
        assert process.wait(timeout=400) == 0, output(host, phase)[-3000:]

    a, b = start("machine-a", 1), start("machine-b", 1)
    # machine-b crashes (kill -9 of its worker, then of its command) in the middle of a trial that has drawn its
    # parameters, once one of its trials has finished; machine-a goes on alone to the budget.
    deadline, storage = time.monotonic() + 300, optuna.storages.RDBStorage(url)
    while True:
        assert time.monotonic() < deadline and b.poll() is None and a.poll() is None, output("machine-b", 1)[-3000:]
        found = re.findall(r"search worker 0: pid (\d+)", output("machine-b", 1))
        now = storage.get_all_trials(storage.get_study_id_from_name(STUDY)) if found else []
        running_b = [t for t in now if t.state == TrialState.RUNNING and t.user_attrs.get("host") == "machine-b"]
        finished_b = [t for t in now if t.state in FINISHED and t.user_attrs.get("host") == "machine-b"]
        if running_b and running_b[0].params and finished_b:
            break
        time.sleep(0.5)
    os.kill(int(found[0]), signal.SIGKILL)
    os.kill(b.pid, signal.SIGKILL)
    b.wait()
    finish(a, "machine-a", 1)
    lost = running_b[:1]  # failed once stale, by machine-a now or, if the budget was met first, by the next command
    before = trials(url)
    finished = {t.number: t for t in before if t.state in FINISHED}
    mtimes = {n: os.stat(f"{t.user_attrs['run_dir']}/result.json").st_mtime_ns for n, t in finished.items()}

    # Both commands again, at the same time, to the end (a lost trial still RUNNING is failed and run again now).
    again = {host: start(host, 2) for host in runs}
    for host, process in again.items():
        finish(process, host, 2)
    after = trials(url)
    numbers = [t.number for t in after]
    assert numbers == list(range(len(after)))  # every trial number once
    done = [t for t in after if t.state in FINISHED]
    assert 4 <= len(done) <= 4 + 1 and not [t for t in after if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    assert {t.user_attrs["host"] for t in done} == {"machine-a", "machine-b"}
    assert after[lost[0].number].state == TrialState.FAIL and "error" not in after[lost[0].number].user_attrs
    retries = [t for t in after if retried_trial_number(t) == lost[0].number]
    assert len(retries) == 1 and retries[0].state in FINISHED and retries[0].params == lost[0].params  # ran again once
    run_dirs = [t.user_attrs["run_dir"] for t in done]
    assert len(set(run_dirs)) == len(run_dirs)  # no finished trial ran twice...
    for number, mtime in mtimes.items():  # ...nor again in the second commands
        assert os.stat(f"{after[number].user_attrs['run_dir']}/result.json").st_mtime_ns == mtime

    # optuna.load_study(URL) as optuna-dashboard does: the run folder and the host of every trial that ran.
    assert optuna.load_study(study_name=STUDY, storage=url).user_attrs[FINGERPRINT_ATTR]
    for t in done + lost:
        host = t.user_attrs["host"]
        assert t.user_attrs["run_dir"].startswith(str(runs[host] / STUDY / f"trial_{t.number:04d}")), t.user_attrs
    # Each machine's report lists the other's trials with their host, and its own from its run folders.
    for host, other in (("machine-a", "machine-b"), ("machine-b", "machine-a")):
        report = (runs[host] / STUDY / "report.md").read_text()
        for t in done:
            if t.user_attrs["host"] == other:  # its run folder is on the other machine: the study's figures
                assert f"trial_{t.number:04d} on {other}" in report and f"ran on {other} (" in report, report
            else:
                assert f"trial_{t.number:04d} |" in report or f"trial_{t.number:04d} (pruned" in report, report
        assert "postgresql://paradis@/two_machines" in report
    assert f"run again as trial_{retries[0].number:04d}" in (runs["machine-b"] / STUDY / "report.md").read_text()


def test_two_workers_failing_the_same_stale_trials_queue_one_retry_each(postgres):
    """The race that needs a file lock on SQLite: several workers see the same stale trials at once and each
    fails them. PostgreSQL's row lock (Optuna reads the trial with SELECT ... FOR UPDATE) lets one win per trial."""
    url = postgres.database("stale_race")
    config = SearchConfig(load_lab(SEARCH))
    config.heartbeat = 1  # stale after 3 s
    study = load_study(url, config, 0, create=True)
    lost = [study.ask() for _ in range(5)]
    for trial in lost:
        trial.suggest_float("lr", 0.01, 0.3)
        study._storage.record_heartbeat(trial._trial_id)  # what a worker's heartbeat thread does, once
    time.sleep(3.5)

    workers = 4
    barrier = threading.Barrier(workers)
    studies = [load_study(url, config, None) for _ in range(workers)]  # each its own engine and connections
    for each in studies:  # every worker has listed the stale trials before any of them fails one
        listed = each._storage._get_stale_trial_ids

        def wait_for_all(study_id: int, listed=listed) -> list[int]:
            ids = listed(study_id)
            barrier.wait(timeout=30)
            return ids

        each._storage._get_stale_trial_ids = wait_for_all
    errors: list[BaseException] = []

    def fail_stale(each) -> None:
        try:
            optuna.storages.fail_stale_trials(each)
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            errors.append(err)

    threads = [threading.Thread(target=fail_stale, args=(each,)) for each in studies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    after = study.get_trials()
    for trial in lost:
        assert after[trial.number].state == TrialState.FAIL
        retries = [t for t in after if retried_trial_number(t) == trial.number]
        assert len(retries) == 1 and retries[0].state == TrialState.WAITING, [t.number for t in retries]
        assert retries[0].params == trial.params
    assert len(after) == 2 * len(lost)


def test_bad_database_or_another_lab_files_study_is_one_sentence(postgres, tmp_path):
    url = postgres.database("bad_input")
    lab = load_lab(SEARCH)
    config = SearchConfig(lab)
    claim_study(load_study(url, config, 0, create=True), lab, config, url)  # made by lab_search_tiny.yaml
    other = tmp_path / "other.yaml"  # the same study name, another search space
    other.write_text(
        SEARCH.read_text().replace("search:", f"name: {STUDY}\nsearch:").replace("[none, cosine]", "[none]")
    )
    cases = {
        "unreachable": (SEARCH, f"postgresql://paradis@/postgres?host={tmp_path}&port=1", "Cannot open the study's"),
        "password": (SEARCH, postgres.url("postgres", "secret", "not-the-password"), "refused the password of user"),
        "other lab": (other, url, f"was made by {SEARCH}"),
    }
    if importlib.util.find_spec("psycopg2") is None:  # the driver a postgresql+psycopg2:// URL names
        cases["driver"] = (SEARCH, url.replace("postgresql://", "postgresql+psycopg2://"), "driver")
    started = {
        name: subprocess.Popen(
            [str(BIN / "paradis-lab"), str(lab_file), "--storage", storage, "--runs-dir", str(tmp_path / "runs")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name, (lab_file, storage, _) in cases.items()
    }
    for name, process in started.items():
        out, err = process.communicate(timeout=120)
        lines = err.strip().splitlines()
        assert process.returncode == 2, (name, out, err)
        assert len(lines) == 1 and lines[0].startswith("paradis-lab: error: ") and cases[name][2] in lines[0], err
        assert "not-the-password" not in err and lines[0].endswith("."), err
        assert lines[0].count(". ") == 0, f"{name}: one sentence: {lines[0]}"
    assert trials(url) == []  # the other lab file did not join the study
