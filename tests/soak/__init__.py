"""Soak tests: real `flowledger serve` processes killed, restarted and raced (issue 9)."""
