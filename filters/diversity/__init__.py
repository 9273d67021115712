"""Diversity: exact (``exact_dup``), near (``near_dup``, MinHash) and semantic (``semantic_dup``,
embeddings) duplicates, with their shared helpers: text normalisation (``text.py``), embeddings and
their disk cache (``embeddings.py``) and duplicate clusters (``clusters.py``)."""
