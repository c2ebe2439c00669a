"""Delivery: the service, per-destination workers, the outbox table, retry policy, dead letters,
subscriptions."""
