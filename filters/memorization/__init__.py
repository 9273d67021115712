"""Memorization: traces that recite training text (``memorization``), perplexity under a reference
model (``perplexity``) and hints that leak into a rationale (``hint_leak``)."""
