"""tracebank's tests: one folder per room of the package (filters/<family>/, curate/, loop/, cli/, bench/ ...)."""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]  # the checkout: recipes/, bench/, README.md; ../shared beside it
# folder -> the name it installs as (pyproject.toml's package-dir); tracebank/ is the ground floor
ROOMS = {"tracebank": "tracebank", **{d: f"tracebank.{d}" for d in
         ("builders", "filters", "curate", "train", "loop", "data_cards", "cli")}}  # fmt: skip
