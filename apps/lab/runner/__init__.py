"""The grid runner: each variant of a lab file as `paradis fit` + `paradis test`, N at a time, and the report of
one axis (search/ runs its trials with it, course/ reads what it wrote). The map: apps/lab/__init__.py."""
