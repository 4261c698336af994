"""JSON-RPC 2.0 for task trees, framework-free: the wire params, the methods, and the
dispatcher. The HTTP server and the CLI both call it, so both validate and answer alike."""
