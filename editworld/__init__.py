"""editworld."""
