"""Stations: what a person or machine at the site does, turned into ledger events."""
