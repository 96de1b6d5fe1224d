"""editrl."""
