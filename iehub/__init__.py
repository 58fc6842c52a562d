"""iehub."""
