"""MLLP connector: inbound listener, connections, framing, frame handler, ACKs, client and outbound."""
