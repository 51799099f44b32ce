"""Data-quality gates: great-expectations suites run as blocking Dagster asset checks."""
