"""`medattn serve`: a run behind an HTTP API (FastAPI) with a web page, upload limits and an optional token."""
