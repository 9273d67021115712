"""Filters score traces; the curation policy (curate/) decides. Every score is stored with its reason.

The core is ``base.py`` (the Scorer contract), ``runner.py`` (the registry and ``tracebank score``)
and ``ray_exec.py`` (the same scorers on Ray Data). One folder per family of scorers:
correctness/, diversity/, contamination/, safety/, chunking/, memorization/. A family may use
another's helpers (``diversity/text.py``'s normalisation, ``diversity/embeddings.py``).

May import: tracebank.
"""
