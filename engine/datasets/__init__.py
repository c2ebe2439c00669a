"""Dataset schemas (schemas/ningbo): the registry and the fast validation path."""
