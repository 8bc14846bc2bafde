"""Where a search's study lives: Optuna's RDB storage (SQLite in the lab folder, or `--storage URL`, e.g.
PostgreSQL, shared by several machines), its errors as one sentence, and the guard that keeps two searches
out of one study.

- Drivers: `postgresql://` is psycopg 3 under SQLAlchemy 2 (`pip install -e ".[postgres]"`);
  `postgresql+psycopg2://` needs `psycopg2-binary`.
- A study remembers which lab file made it (a fingerprint of its base, args and `search:` block, less the
  budget and heartbeat, in the study's user attrs): a lab file with another search space under the same name
  is refused, so two searches never mix in one study.
- Stale trials: `fail_stale_trials` fails each trial in a transaction that reads it with `SELECT ... FOR UPDATE`
  and re-queues only the trials it failed itself. PostgreSQL (and MySQL/InnoDB) make the second of two workers
  wait for the first one's commit, then see the trial failed already: one retry, between machines too
  (tests/test_lab_postgres.py races it). SQLite ignores `FOR UPDATE`, so there the workers of one machine (the
  only ones that can share a SQLite file) take a file lock around it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import re
import warnings
from pathlib import Path

FINGERPRINT_ATTR = "paradis_lab_fingerprint"
LAB_FILE_ATTR = "paradis_lab_file"
STALE_LOCK = ".fail_stale.lock"


def retry_callback_class():
    """Optuna >= 4.9: `RetryHeartbeatStaleTrialCallback` (`RetryFailedTrialCallback` is deprecated, gone in 6.0)."""
    try:
        from optuna.storages import RetryHeartbeatStaleTrialCallback
    except ImportError:  # optuna < 4.9
        from optuna.storages import RetryFailedTrialCallback as RetryHeartbeatStaleTrialCallback
    return RetryHeartbeatStaleTrialCallback


def retried_trial_number(trial) -> int | None:
    return retry_callback_class().retried_trial_number(trial)


def shown_url(url: str) -> str:
    """The URL without its password (for messages and reports)."""
    return re.sub(r"(://[^:/@?]+):[^@/?]*@", r"\1:***@", url)


def storage_error(url: str, err: BaseException) -> ValueError:
    """A storage that cannot be opened, as one sentence (the CLI prints it and exits 2)."""
    shown = shown_url(url)
    cause = err
    while cause.__cause__ is not None and not isinstance(cause, ModuleNotFoundError):
        cause = cause.__cause__
    if isinstance(cause, ImportError):
        return ValueError(
            f'The database driver for {shown} is not installed ({cause}); `pip install -e ".[postgres]"` installs '
            "psycopg 3, which postgresql:// URLs use (postgresql+psycopg2:// needs psycopg2-binary)."
        )
    reason = str(getattr(err, "orig", None) or err).strip().splitlines()[0].rstrip(".")
    if "password authentication failed" in reason:
        user = reason.split("for user")[-1].strip(' "')
        return ValueError(
            f"The database at {shown} refused the password of user {user}; check the user and password in --storage."
        )
    return ValueError(
        f"Cannot open the study's database {shown} ({reason}); check --storage and that the server is running."
    )


def make_storage(url: str, heartbeat: int):
    import optuna
    import sqlalchemy.exc
    from optuna.storages import RDBStorage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Heartbeats, stale-trial retries and the matplotlib plots are marked experimental; they are what we use.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    retry = retry_callback_class()
    keyword = (
        "failed_trial_callback" if retry.__name__ == "RetryFailedTrialCallback" else "heartbeat_stale_trial_callback"
    )
    try:
        return RDBStorage(
            url, heartbeat_interval=heartbeat, grace_period=3 * heartbeat, **{keyword: retry(max_retry=3)}
        )
    except (sqlalchemy.exc.SQLAlchemyError, ImportError) as err:
        raise storage_error(url, err) from err


def lab_fingerprint(lab, config) -> str:
    """What makes two lab files one search: base configs, args and the `search:` block less budget/heartbeat."""
    search = {k: v for k, v in sorted((lab.search or {}).items()) if k not in ("trials", "heartbeat")}
    text = json.dumps({"base": lab.base, "args": lab.args, "search": search}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def claim_study(study, lab, config, url: str) -> None:
    """Mark a new study with its lab file's fingerprint; refuse one that another lab file made."""
    mine = lab_fingerprint(lab, config)
    theirs = study.user_attrs.get(FINGERPRINT_ATTR)
    if theirs is None:
        study.set_user_attr(FINGERPRINT_ATTR, mine)
        study.set_user_attr(LAB_FILE_ATTR, str(lab.path))
    elif theirs != mine:
        other = study.user_attrs.get(LAB_FILE_ATTR, "another lab file")
        raise ValueError(
            f"Study `{config.study_name}` in {shown_url(url)} was made by {other}, whose search differs from "
            f"{lab.path}'s (base, args or search space); never mix two searches in one study: give this lab "
            "file another `name:` or use another --storage."
        )


@contextlib.contextmanager
def stale_trials_guard(url: str, out_dir: Path):
    """SQLite only: one local worker at a time fails stale trials (the database does it on PostgreSQL)."""
    if not url.startswith("sqlite"):
        yield
        return
    with open(out_dir / STALE_LOCK, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
