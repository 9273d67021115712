"""Correctness: verified final answers and executed code (``correctness``), and self-consistency
across a prompt's traces (``self_consistency``)."""
