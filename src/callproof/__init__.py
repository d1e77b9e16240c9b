"""callproof."""
