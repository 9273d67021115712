"""Filters score traces; the curation policy decides. Every score is stored with its reason."""
