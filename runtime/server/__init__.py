"""The server: engine, job runner, event bus, site registry."""
