"""A lab file's `search:` block: an Optuna study whose trials run through runner/. The map: apps/lab/__init__.py."""
