"""`python -m habacli` is the same as `haba`."""

from habacli.cli import main

if __name__ == "__main__":
    main()
