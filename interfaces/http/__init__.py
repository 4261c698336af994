"""The HTTP server: Litestar routes over the JSON-RPC core, served by uvicorn."""
