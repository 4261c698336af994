"""Executors that talk to the outside world over HTTP; registered through the
flowledger.executors entry-point group (see pyproject.toml), like any plugin."""
