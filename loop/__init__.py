"""The closed loop: rounds that build, score, curate, train and evaluate again (``rounds.py``), one
loop step over a pool (``steps.py``), hint rationalization (``hints.py``) and PromptMix prompt
augmentation (``promptmix.py``).

May import: train, curate, filters, builders, tracebank.
"""
