"""Use cases of flowledger: the event-sourced Ledger, its store wiring, and its queries."""
