"""Contamination: traces whose prompts overlap registered benchmark items (``decontam``), by word
n-grams (``ngrams.py``)."""
