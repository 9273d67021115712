"""Data cards: a markdown card per release, rendered from stored stats only (with the rounds that
made it), its plots, and publishing a release with its card (HF datasets export).

May import: loop, train, curate, filters, builders, tracebank.
"""
