"""`paradis`: one LightningCLI for every task.

    paradis fit|validate|test|predict --config configs/<name>.yaml [--section.key value ...]

The model and the data module are chosen by the config (subclass mode). This subclass adds the *run folder*
(`runs/<config name>/` or --run_dir: config.yaml of the last `fit`, TensorBoard events, checkpoints/last.ckpt
and best.ckpt) and the rules that keep it safe: `fit` never overwrites a trained run, `--ckpt_path last` never
silently starts from scratch, and `validate`/`test`/`predict` default to the run's best checkpoint. Bad input
ends in one sentence and exit code 2 (set PARADIS_DEBUG=1 for the traceback).
"""

from __future__ import annotations

import functools
import os
import sys
from pathlib import Path
from typing import Any

from lightning.fabric.plugins import CheckpointIO
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import ProgressBar, Timer, TQDMProgressBar
from lightning.pytorch.cli import LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_only
from lightning.pytorch.utilities.exceptions import MisconfigurationException, SIGTERMException

from apps.cli_parser import ParadisParser, requested_subcommand
from callbacks.speed import EpochStats
from paradis.checkpoint import check_class, qualified_name, read_checkpoint
from paradis.lightning_internals import CheckpointArgumentsCLI
from paradis.profiler import NoProfiler
from paradis.runtime import prepare_process
from paradis.safety.atomic_io import AtomicCheckpointIO, CheckpointNotWritten
from paradis.safety.divergence import Diverged
from paradis.safety.run_folder import (
    CHECKPOINT_DIR,
    RunFolderGuard,
    check_budget_left,
    exit_stopped,
    reliability_callbacks,
)
from paradis.yaml_files import read_yaml

# Errors that come from what the user typed or pointed at (MisconfigurationException: a Lightning setting), shown
# as one sentence.
USER_ERRORS = (
    ValueError,
    FileNotFoundError,
    NotADirectoryError,
    FileExistsError,
    PermissionError,
    CheckpointNotWritten,
    MisconfigurationException,
)


class FitConfigSaver(SaveConfigCallback):
    """Write `config.yaml` into the run folder on `fit` only, so `test`/`predict` never rewrite it."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":
            super().setup(trainer, pl_module, stage)


class ParadisCLI(CheckpointArgumentsCLI):
    def __init__(self, args: list[str] | None = None, run: bool = True) -> None:
        self._requested = requested_subcommand(args, LightningCLI.subcommands())
        self._peeked: dict[str, dict] = {}  # checkpoint path -> its memory-mapped contents (see `peek`)
        for path in config_files(sys.argv[1:] if args is None else args):
            read_yaml(path)  # one sentence for a missing file, a syntax error or a key written twice
        super().__init__(
            LightningModule,
            LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            save_config_callback=FitConfigSaver,
            save_config_kwargs={"overwrite": True},
            auto_configure_optimizers=False,
            parser_class=ParadisParser,
            args=args,
            run=run,
            # what every config would otherwise repeat; Lightning's devices="auto" would be DDP on every GPU:
            trainer_defaults={"accelerator": "auto", "devices": 1},
            seed_everything_default=42,
        )

    def subcommands(self) -> dict[str, set[str]]:
        """Only the requested subcommand's parser (~0.1 s of start-up each); all four for `--help` or a typo."""
        every = LightningCLI.subcommands()
        requested = getattr(self, "_requested", None)
        return {requested: every[requested]} if requested else every

    def add_arguments_to_parser(self, parser) -> None:
        parser.add_argument(
            "--run_dir",
            type=str | None,
            default=None,
            help="Run folder: config.yaml, checkpoints, TensorBoard events (default: runs/<config name>).",
        )
        parser.add_argument(
            "--checkpoint.every_n_minutes",
            type=float | None,
            default=10.0,
            help="Refresh last.ckpt during an epoch after this many minutes of training (0: never).",
        )
        parser.add_argument(
            "--checkpoint.every_n_steps",
            type=int,
            default=0,
            help="Refresh last.ckpt during an epoch every this many optimizer steps (0: never).",
        )
        # The text task's wiring: the data module tokenises with the model's tokenizer and max length, and the
        # model's head is sized from the data's class names. jsonargparse skips a link whose source or target the
        # config's classes lack (MNIST, DDPM).
        parser.link_arguments("model.init_args.model_name_or_path", "data.init_args.tokenizer")
        parser.link_arguments("model.init_args.max_length", "data.init_args.max_length")
        parser.link_arguments(
            "data", "model.init_args.class_names", compute_fn=data_class_names, apply_on="instantiate"
        )

    # -- run folder ---------------------------------------------------------------------------
    @property
    def run_dir(self) -> Path:
        """--run_dir, else `runs/<stem of the last --config>`, or `runs/default` without a config."""
        config = self.config[self.subcommand]
        if config.run_dir:
            return Path(config.run_dir)
        return Path("runs", Path(str(config["config"][-1])).stem if config.get("config") else "default")

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        run_dir = self.run_dir
        trainer_config = self.config_init[self.subcommand].get("trainer") or {}
        check_max_time(trainer_config.get("max_time"))
        callbacks = list(trainer_config.get("callbacks") or [])
        if trainer_config.get("enable_progress_bar") is False:  # Lightning refuses a config's bar then
            callbacks = [c for c in callbacks if not isinstance(c, ProgressBar)]
        elif not any(isinstance(c, ProgressBar) for c in callbacks):  # tqdm, for one look and plain logs (Lightning's
            callbacks.append(TQDMProgressBar())  # default is its Rich bar wherever rich is installed)
        intervals = self.config[self.subcommand].get("checkpoint") or {}
        if not any(isinstance(c, EpochStats) for c in callbacks):
            callbacks.append(EpochStats())
        kwargs["callbacks"] = callbacks + reliability_callbacks(callbacks, run_dir, self.model, intervals)
        if trainer_config.get("profiler") is None:
            kwargs["profiler"] = NoProfiler()
        plugins = trainer_config.get("plugins") or []
        plugins = list(plugins) if isinstance(plugins, (list, tuple)) else [plugins]
        if not any(isinstance(p, CheckpointIO) for p in plugins):
            kwargs["plugins"] = plugins + [AtomicCheckpointIO()]
        if trainer_config.get("logger") in (None, True):
            kwargs["logger"] = TensorBoardLogger(
                save_dir=str(run_dir),
                name="",
                version="",
                default_hp_metric=False,
                log_graph=getattr(self.model, "example_input_array", None) is not None,
            )
        if trainer_config.get("default_root_dir") in (None, os.getcwd()):
            kwargs["default_root_dir"] = str(run_dir)
        return super().instantiate_trainer(**kwargs)

    # -- checkpoint rules ---------------------------------------------------------------------
    # Targets of links computed from the data module when the model is built: a checkpoint's saved value is stale
    # or, for a model without that argument, not an argument at all.
    LINKED_FROM_DATA = ("class_names",)
    # Arguments a model no longer takes that its older checkpoints still hold, dropped in this one place: this parse
    # is the one reader that would refuse them (Lightning's `load_from_checkpoint` and `module_from_checkpoint`, for
    # the app and the exporters, pass a class only the arguments it takes). DDPM's six speed switches moved to the
    # `callbacks.cuda_speed.CudaSpeed` callback (issue 29): how fast a machine ran a model is no part of the model.
    RETIRED = {
        "lightning_modules.ddpm.DDPM": (
            "tf32",
            "cudnn_benchmark",
            "channels_last",
            "fused_adamw",
            "compile",
            "gradient_checkpointing",
        ),
    }

    def peek(self, ckpt_path: str) -> dict:
        """The checkpoint, memory-mapped: the argument, class and budget checks share this one peek."""
        if ckpt_path not in self._peeked:
            self._peeked[ckpt_path] = read_checkpoint(ckpt_path, mmap=True)
        return self._peeked[ckpt_path]

    def read_checkpoint_arguments(self) -> None:
        """The model's arguments from an explicit `--ckpt_path FILE` (so the model is built as trained), from the
        peek, without those the data module supplies (Lightning's own step passed the saved `class_names: None`
        to every model and failed for MNIST and DDPM); a bad file is one sentence."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or ckpt_path in ("last", "best"):
            return
        hparams = dict(self.peek(ckpt_path).get("hyper_parameters") or {})
        class_path = hparams.pop("_class_path", None)
        if class_path is None:  # not written by LightningCLI: the config's model stands
            return
        for name in ("_instantiator", *self.LINKED_FROM_DATA, *self.RETIRED.get(class_path, ())):
            hparams.pop(name, None)
        model = {"class_path": class_path, "init_args": hparams}
        self.config = self.parser.parse_object({subcommand: {"model": model}}, self.config)

    def _resolve_ckpt_path(self) -> str | None:
        config = self.config_init[self.subcommand]
        ckpt_path = config.get("ckpt_path")
        checkpoints = self.run_dir / CHECKPOINT_DIR
        last, best = checkpoints / "last.ckpt", checkpoints / "best.ckpt"
        configs = " ".join(f"--config {c}" for c in (self.config[self.subcommand].get("config") or []))
        if self.subcommand == "fit":
            if ckpt_path is None:
                if last.exists() or best.exists():
                    raise FileExistsError(
                        f"{self.run_dir} already holds a trained run ({checkpoints}); resume it "
                        "with `--ckpt_path last`, or start a new run elsewhere with "
                        "`--run_dir NEW_FOLDER`."
                    )
                return None
            if ckpt_path == "last":
                if not last.exists():
                    raise FileNotFoundError(
                        f"There is no checkpoint to resume: {last} does not exist; train first "
                        f"with `paradis fit {configs}` (without --ckpt_path), or pass --run_dir "
                        "of an existing run."
                    )
                ckpt_path = str(last)
            if Path(ckpt_path).is_file():
                check_budget_left(self.peek(ckpt_path), ckpt_path, self.trainer)
        else:
            if ckpt_path in (None, "best"):
                ckpt_path = str(best if best.exists() else last)
                if not Path(ckpt_path).exists():
                    raise FileNotFoundError(
                        f"There is no trained checkpoint in {checkpoints}; train one with "
                        f"`paradis fit {configs}`, or pass --ckpt_path FILE."
                    )
            elif ckpt_path == "last":
                ckpt_path = str(last)
        check_class(
            self.peek(ckpt_path),
            ckpt_path,
            [qualified_name(type(self.model))],
            hint="use the config the checkpoint was trained with.",
        )
        return ckpt_path

    def run_safely(self, subcommand: str, **kwargs: Any) -> None:
        """The Trainer's `subcommand` on the run folder's checkpoint, a failed start undone, a stop reported."""
        kwargs["ckpt_path"] = self._resolve_ckpt_path()
        self._peeked.clear()  # (fit rewrites these files)
        guard = RunFolderGuard(self.run_dir) if subcommand == "fit" else None
        try:
            getattr(self.trainer, subcommand)(**kwargs)
        except BaseException as err:
            if self.trainer.progress_bar_callback is not None and self.trainer.is_global_zero:
                print(flush=True)  # end the bar's line: what follows starts on a line of its own
            if isinstance(err, SIGTERMException):
                exit_stopped(self.trainer)
            if not isinstance(err, USER_ERRORS):
                raise
            started = any(getattr(c, "started", False) for c in self.trainer.callbacks)
            if guard is not None and not started and self.trainer.is_global_zero:
                guard.undo()  # e.g. the data module's setup found no data: leave the run folder as it was
            raise
        if subcommand == "fit" and self.trainer.is_global_zero:
            print(
                f"\nRun folder: {self.run_dir}\n  checkpoints: {self.run_dir / CHECKPOINT_DIR}\n"
                f"  TensorBoard: tensorboard --logdir {self.run_dir.parent}",
                file=sys.stderr,
            )

    # LightningCLI runs `self.<subcommand>(**its arguments)` when the CLI has such a method, else the Trainer's.
    fit, validate, test, predict = map(
        functools.partial(functools.partialmethod, run_safely), ("fit", "validate", "test", "predict")
    )


def check_max_time(value: Any) -> None:
    """One sentence for a `--trainer.max_time` that Lightning's Timer (which parses it) would refuse with a traceback."""
    if not isinstance(value, str):
        return
    try:
        Timer(duration=value)
    except MisconfigurationException:
        raise ValueError(
            f"--trainer.max_time '{value}' is not a duration; write DD:HH:MM:SS with two digits each, "
            "e.g. 00:01:30:00 for 90 minutes."
        ) from None


def config_files(args: list[str]) -> list[str]:
    """The files given with `--config FILE` / `--config=FILE`."""
    found = [value for flag, value in zip(args, args[1:]) if flag == "--config"]
    return found + [arg.split("=", 1)[1] for arg in args if arg.startswith("--config=")]


def data_class_names(data: LightningDataModule) -> list[str] | None:  # (`--help` names the link by it)
    return getattr(data, "class_names", None)


def user_error_message(err: BaseException) -> str:
    """The sentence a user needs: jsonargparse wraps a module's ValueError raised while the config is
    instantiated ("Does not validate against any of the Union subtypes ..."); report the innermost one."""
    seen = {id(err)}
    while True:
        inner = err.__cause__ or (None if err.__suppress_context__ else err.__context__)  # `from None`: final
        if not isinstance(inner, USER_ERRORS) or id(inner) in seen:
            return str(err)
        seen.add(id(inner))
        err = inner


def main(args: list[str] | None = None) -> None:
    prepare_process(console=args is None)  # quiet libraries, no NVML probe without a GPU, gc.freeze()
    try:
        ParadisCLI(args=args)
    except (*USER_ERRORS, Diverged) as err:  # Diverged: the weights stay finite; last.ckpt holds them
        if os.environ.get("PARADIS_DEBUG"):
            raise
        diverged = isinstance(err, Diverged)
        if not diverged or rank_zero_only.rank == 0:
            print(f"paradis: error: {err if diverged else user_error_message(err)}", file=sys.stderr)
        sys.exit(1 if diverged else 2)


if __name__ == "__main__":
    main()
