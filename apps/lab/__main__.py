"""`python -m apps.lab` = `paradis-lab`."""

from apps.lab.cli import main

if __name__ == "__main__":
    main()
