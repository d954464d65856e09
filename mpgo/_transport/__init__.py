"""Transport layer: shared-memory atomics and inter-process messaging."""
