"""The ``tracebank`` command: the typer app (``main.py``) and its sub-commands, recipes, summaries and
the SQL shell. The top floor: nothing imports it but ``python -m tracebank``.

May import: data_cards, loop, train, curate, filters, builders, tracebank.
"""
