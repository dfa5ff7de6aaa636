"""Ways other tools reach the engine: an OpenAI-compatible HTTP API and an MCP server."""
