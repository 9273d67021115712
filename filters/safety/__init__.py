"""Safety: links and look-alike domains, promotion, phishing, drift, propagated payloads, personal
data and secrets, insecure code. ``safety.py`` names the group; ``persuasion.py`` is the shared
exemplar matching of promotion and drift; ``python_spans.py`` finds the Python in a trace; ``data/``
holds the lexicons and exemplars (users extend them by option)."""
