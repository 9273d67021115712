"""Builders: query teachers (and students) for chain-of-thought traces, cached and resumable.

Teacher backends (transformers, openai-compatible HTTP, vLLM, replay), build plans, the request
cache, rate limits and budget, the trace sink, the build runner, Ray builds and a stub server.

May import: tracebank.
"""
