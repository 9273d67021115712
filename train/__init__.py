"""A thin TRL stage: train students (SFT, chunk-wise, ORPO, DPO) from curated releases, build
preference pairs, and evaluate students with the tasks' own verifiers.

May import: curate, filters, builders, tracebank.
"""
