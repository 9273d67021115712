"""A thin TRL stage: train students from curated releases."""
