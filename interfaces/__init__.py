"""The outside world's ways in: the Click CLI (and, later, the HTTP server)."""
