"""Logic that spans tables (ingest, balances); the API routes stay thin on top of it."""
