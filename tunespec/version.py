"""The package version (one home: the CLI, the client's User-Agent and the reports read it)."""

__version__ = "0.1.0"
