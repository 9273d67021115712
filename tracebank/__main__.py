"""``python -m tracebank`` is the ``tracebank`` command."""

from tracebank.cli import main

main()
