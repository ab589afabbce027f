"""``python -m detector.cli``: the same as the ``detector`` command."""

from detector.cli import main

main()
