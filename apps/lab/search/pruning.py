"""Optuna pruning for a run that is one trial of a study: report the monitored metric after every
validation, stop training when the study's pruner says the trial is hopeless.

The same job as optuna-integration's `PyTorchLightningPruningCallback`, which takes a live `Trial`
object: this one is built from plain arguments (storage URL, study name, trial number), so a
LightningCLI config or a `paradis fit --trainer.callbacks+=...` option in another process can add it.
Instead of raising `TrialPruned` through the Trainer it stops training cleanly (checkpoints and logs
stay consistent) and writes `<run folder>/pruned.json`; the process that owns the trial marks it pruned.
"""

from __future__ import annotations

import json
from pathlib import Path

from lightning.pytorch import Callback, LightningModule, Trainer

from apps.lab.search.space import PRUNED_FILE


class OptunaPruning(Callback):
    def __init__(
        self,
        storage: str,
        study_name: str,
        trial_number: int,
        monitor: str = "val/acc",
        startup_trials: int = 5,
        warmup_epochs: int = 1,
        pruner: str = "median",
    ) -> None:
        self.storage, self.study_name, self.trial_number = storage, study_name, trial_number
        self.monitor, self.startup_trials, self.warmup_epochs, self.pruner = (
            monitor,
            startup_trials,
            warmup_epochs,
            pruner,
        )
        self._trial = None

    def _load_trial(self):
        import optuna

        pruner = (
            optuna.pruners.MedianPruner(n_startup_trials=self.startup_trials, n_warmup_steps=self.warmup_epochs)
            if self.pruner == "median"
            else optuna.pruners.NopPruner()
        )
        storage = optuna.storages.get_storage(self.storage)
        study = optuna.load_study(study_name=self.study_name, storage=storage, pruner=pruner)
        study_id = storage.get_study_id_from_name(self.study_name)
        return optuna.trial.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, self.trial_number))

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or self.monitor not in trainer.callback_metrics:
            return
        if self._trial is None:
            self._trial = self._load_trial()
        epoch = trainer.current_epoch
        self._trial.report(float(trainer.callback_metrics[self.monitor]), step=epoch)
        if self._trial.should_prune():
            trainer.should_stop = True
            (Path(trainer.default_root_dir) / PRUNED_FILE).write_text(json.dumps({"epoch": epoch + 1}))
