"""How a run stays safe and resumes exactly: the map (docs/design.md, "What keeps a run safe").

`paradis fit` (apps/cli.py) adds the callbacks below to every run, whatever the config says, and writes every
checkpoint through the atomic writer. A run stopped any way (max_steps, max_time, early stopping, SIGTERM,
Ctrl-C, an exception) leaves `last.ckpt` holding its latest state, never a partial file and never a NaN, and
`fit --ckpt_path last` goes on bit-identical to a run that never stopped (tests/test_stop_matrix.py).

One entry per file: what it holds, and the hook or moment where it acts.
  run_folder.py     `paradis fit`'s rules for the run folder. Before `fit`: the folder must be writable
                    (`RunFolderGuard`); when the trainer is built: `reliability_callbacks` adds the three callbacks
                    below and `best.ckpt` (Lightning's `ModelCheckpoint`); on `--ckpt_path`: `check_budget_left`;
                    a failed start: `RunFolderGuard.undo()` puts the folder back; after a SIGTERM / Ctrl-C stop:
                    `exit_stopped` says where `last.ckpt` is and exits 128 + the signal.
  checkpointing.py  `RunCheckpoint` writes `last.ckpt`: at every training epoch end and mid-epoch validation end,
                    every N minutes / M steps (`on_train_batch_end`), at `on_train_end` and `on_exception`; holds
                    SIGTERM / Ctrl-C to the end of the next batch that takes an optimizer step, saves there and
                    raises Lightning's `SIGTERMException` at its next hook.
  atomic_io.py      `AtomicCheckpointIO`, the trainer's CheckpointIO plugin: every checkpoint save goes to a temporary
                    file next to the target, fsync, rename; weights that are not finite are never written.
  resume.py         `ExactResume`: every rank's RNG states and the loaders' generators into each checkpoint
                    (`on_save_checkpoint`), read back at `on_load_checkpoint`, set at `on_train_start`; refuses a
                    budget that would resize the LR schedule.
  divergence.py     `DivergenceGuard`: collects the losses (`on_before_backward`) and, at
                    `on_before_optimizer_step`, raises `Diverged` before a non-finite loss or gradient is stepped.
  loader_state.py   `TrainLoaderState`, a data module's `state_dict` / `load_state_dict`: the training loader's
                    position in every checkpoint, restored by Lightning before the loader is built and handed to it
                    in `train_dataloader()` (`resumable`); `TrainOrder`, the epoch-seeded, sharded sampler whose
                    position it saves: a run resumed mid-epoch goes on from the next batch.
Beside the package, in paradis/:
  checkpoint.py            the one checkpoint reader (`read_checkpoint`, `weights_only=True`), the class check,
                           `progress` (epochs and steps a checkpoint holds): every load, also `--ckpt_path`.
  lightning_internals.py   the one private Lightning name used (`CheckpointArgumentsCLI`: `--ckpt_path FILE`'s
                           saved arguments, read when the CLI parses), listed for tests/test_surface.py.
"""
