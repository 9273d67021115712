"""``python -m tracebank`` is the ``tracebank`` command."""

from tracebank.cli.main import main

main()
