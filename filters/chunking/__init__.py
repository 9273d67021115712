"""Chunking: rationales cut into scored steps (``chunking``): boundaries (``segment.py``, ``tiling.py``),
step kinds (``chunk_kinds.py``), per-step checks (``steps.py``, ``arith.py``) and redundancy."""
