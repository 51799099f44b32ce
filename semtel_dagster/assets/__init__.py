"""Stage assets: each reads its inputs from the lake, calls ``core``, writes its tables, reports metadata."""
