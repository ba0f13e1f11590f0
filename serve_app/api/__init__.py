"""The HTTP layer: the Starlette app and routes of both APIs, keys, SSE, errors to HTTP."""
