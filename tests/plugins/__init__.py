"""Executor plugins loaded by subprocess tests through FLOWLEDGER_PLUGINS."""
