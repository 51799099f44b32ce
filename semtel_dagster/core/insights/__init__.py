"""What a week says: label aggregates and run summaries read back from the lake."""
