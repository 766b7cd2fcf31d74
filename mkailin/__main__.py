"""``python -m mkailin``: the same as the ``mkailin`` command."""

from mkailin.cli import main

main()
