"""Process-wide configuration of the central service."""
