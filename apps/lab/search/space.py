"""The `search:` block of a lab file, checked: the budget, objective, sampler, pruner and parameter ranges
(apps/lab/search/study.py runs the study)."""

from __future__ import annotations

from typing import Any

from apps.lab.spec import Lab, format_value

# What a pruned trial leaves in its run folder (apps/lab/search/pruning.py writes it, study.py reads it): here, so
# that a search worker reads it without importing Lightning (~9 s of a worker's start).
PRUNED_FILE = "pruned.json"

SEARCH_KEYS = {
    "trials",
    "objective",
    "direction",
    "sampler",
    "pruner",
    "startup_trials",
    "warmup_epochs",
    "heartbeat",
    "params",
}


class SearchConfig:
    def __init__(self, lab: Lab) -> None:
        spec: dict[str, Any] = dict(lab.search or {})
        where = f"{lab.path}: search"
        unknown = sorted(set(spec) - SEARCH_KEYS)
        if unknown:
            raise ValueError(
                f"{where} has unknown key(s) {', '.join(unknown)}; use only {', '.join(sorted(SEARCH_KEYS))}."
            )
        self.study_name = lab.axis
        self.trials = self._positive_int(spec.get("trials", 20), f"{where}.trials")
        self.objective = str(spec.get("objective", "val/acc"))
        self.direction = str(spec.get("direction", "minimize" if "loss" in self.objective else "maximize"))
        self.sampler = str(spec.get("sampler", "tpe"))
        self.pruner = str(spec.get("pruner", "median"))
        self.startup_trials = self._positive_int(spec.get("startup_trials", 5), f"{where}.startup_trials")
        self.warmup_epochs = int(spec.get("warmup_epochs", 1))
        self.heartbeat = self._positive_int(spec.get("heartbeat", 10), f"{where}.heartbeat")
        for key, value, choices in (
            ("direction", self.direction, ("maximize", "minimize")),
            ("sampler", self.sampler, ("tpe", "random")),
            ("pruner", self.pruner, ("median", "none")),
        ):
            if value not in choices:
                raise ValueError(f"{where}.{key} is {value!r}; use one of {', '.join(choices)}.")
        params = spec.get("params")
        if not isinstance(params, dict) or not params:
            raise ValueError(
                f"{where} needs `params`: option -> range ({{low, high}}), list of choices, or {{layers, width}}."
            )
        self.params = {
            str(option).lstrip("-"): self._check_param(str(option), rng, where) for option, rng in params.items()
        }

    @staticmethod
    def _positive_int(value: Any, where: str) -> int:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{where} must be a positive integer, got {value!r}.")
        return value

    @staticmethod
    def _check_param(option: str, rng: Any, where: str) -> Any:
        if isinstance(rng, list) and rng:
            return rng
        if isinstance(rng, dict) and {"layers", "width"} <= set(rng):
            if not all(isinstance(rng[k], list) and len(rng[k]) == 2 for k in ("layers", "width")):
                raise ValueError(
                    f"{where}.params.{option}: `layers` and `width` must be [low, high] pairs of integers."
                )
            return rng
        if isinstance(rng, dict) and {"low", "high"} <= set(rng) and rng["low"] < rng["high"]:
            return rng
        raise ValueError(
            f"{where}.params.{option} must be a list of choices, {{low, high[, log]}} with low < high, "
            "or {layers: [lo, hi], width: [lo, hi]}."
        )

    def suggest(self, trial) -> list[str]:
        """The trial's sampled values as `--option value` arguments."""
        args: list[str] = []
        for option, rng in self.params.items():
            short = option.rsplit(".", 1)[-1]
            if isinstance(rng, list):
                value = trial.suggest_categorical(short, rng)
            elif "layers" in rng:
                layers = trial.suggest_int("layers", *rng["layers"])
                value = [trial.suggest_int("width", *rng["width"], log=bool(rng.get("log")))] * layers
            elif isinstance(rng["low"], int) and isinstance(rng["high"], int) and not rng.get("log"):
                value = trial.suggest_int(short, rng["low"], rng["high"], step=rng.get("step", 1))
            else:
                value = trial.suggest_float(short, float(rng["low"]), float(rng["high"]), log=bool(rng.get("log")))
            args += [f"--{option}", format_value(value)]
        return args

    def pruning_callback(self, url: str, number: int) -> list[str]:
        """`--trainer.callbacks+=` options that add the pruning callback to a trial's `fit` (not shown in its command)."""
        if self.pruner == "none":
            return []
        init = {
            "storage": url,
            "study_name": self.study_name,
            "trial_number": number,
            "monitor": self.objective,
            "startup_trials": self.startup_trials,
            "warmup_epochs": self.warmup_epochs,
            "pruner": self.pruner,
        }
        return [
            "--trainer.callbacks+=apps.lab.search.pruning.OptunaPruning",
            *(f"--trainer.callbacks.init_args.{k}={v}" for k, v in init.items()),
        ]
