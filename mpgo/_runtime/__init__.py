"""The processes: supervisor, workers, broker, lock queues — built on core + transport."""
