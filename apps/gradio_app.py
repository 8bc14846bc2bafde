"""Kept for `python -m apps.gradio_app` and installs made before the split: the app lives in `apps.app`."""

from apps.app.main import build_app, main, parse_args  # noqa: F401

if __name__ == "__main__":
    main()
