"""Builders: query teachers (and students) for chain-of-thought traces, cached and resumable."""
