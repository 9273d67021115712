"""Data cards: a markdown card per release, rendered from stored stats only."""
