"""Landing data to canonical conversations: format adapters, the record contract, weekly reads."""
