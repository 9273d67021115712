"""tracebank: build, curate, version and publish datasets of teacher reasoning traces.

This package is the ground floor every stage stands on: the catalog (DuckDB + DuckLake) and its
metadata backends, the record schemas, import and readers, data sources and registered benchmarks,
tasks and their verifiers, the sandbox, hashing, settings, precision, errors and terminal output.

The rooms above it, in the order data flows through them (each installs as ``tracebank.<room>``):
builders (prompts -> traces), filters (traces -> scores), curate (scores -> decisions and releases),
train (releases -> students), loop (rounds of the stages above), data_cards (releases -> cards),
cli (the ``tracebank`` command over all of them).

May import: nothing above it (``python -m tracebank``, in ``__main__.py``, is the one door to cli).
"""

__version__ = "0.1.0"
