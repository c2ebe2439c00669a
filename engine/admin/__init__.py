"""The admin HTTP API and console: server, auth, messages/DLQ/reload APIs, counter history, static files."""
