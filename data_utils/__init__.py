"""Data utilities: task definitions, readers/writers, metrics, logging."""
