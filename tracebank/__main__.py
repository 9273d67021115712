"""``python -m tracebank`` is the ``tracebank`` command."""

from tracebank.cli.main import main

if __name__ == "__main__":  # imported by tools that walk the package (docs), it runs nothing
    main()
