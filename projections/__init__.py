"""Read models (CQRS projections) built from the Ledger's notification log."""
