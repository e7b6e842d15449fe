"""``python -m msad``: the msad command line."""

from msad.cli.main import main

if __name__ == "__main__":
    main()
