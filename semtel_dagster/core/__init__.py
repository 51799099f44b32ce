"""Pure business logic: no Dagster imports here, only Polars/Arrow data and plain Python."""
