"""`paradis-app`: one Gradio app over every task's saved checkpoints (see `apps.app.main`).

tasks.py      the registry: one `Task` entry per task (class, title, train command, tab, loader)
discovery.py  run folders and checkpoints found once, grouped by task, labelled
models.py     loading (weights_only, class checked, cached per file version)
inference.py  what each tab computes (the same preprocessing and grids as `paradis predict`)
tabs.py       the three tabs' components and their API endpoints
main.py       the page and the command line
"""
