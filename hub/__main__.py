"""``python -m hub``: see :mod:`hub.cli`."""

from hub.cli import main

main()
