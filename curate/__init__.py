"""Curation: the step the project is named for, from stored scores to versioned releases.

Policies (``policy.py``: keep/drop rules over scores, every decision stored with its reason), diverse
selection (``select.py``), the SQL guard of policy expressions (``sql_guard.py``), releases
(``releases.py``: DuckLake snapshots of kept traces), diffs between releases (``diff.py``) and release
metrics (``release_metrics.py``).

May import: filters, tracebank.
"""
