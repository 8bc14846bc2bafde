"""`python -m apps.lab` = `paradis-lab`."""

from apps.lab import main

if __name__ == "__main__":
    main()
