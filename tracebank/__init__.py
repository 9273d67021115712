"""tracebank: build, curate, version and publish datasets of teacher reasoning traces."""

__version__ = "0.1.0"
