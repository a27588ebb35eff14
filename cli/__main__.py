"""``python -m cli``: the ``imsflow`` command."""

from cli.main import main

main()
