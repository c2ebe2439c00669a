"""File connectors: the drop-directory inbound channel and the one-file-per-record destination."""
