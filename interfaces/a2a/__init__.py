"""A2A 1.0: the protocol on flowledger's server (a2a-sdk's request handler and types)."""
