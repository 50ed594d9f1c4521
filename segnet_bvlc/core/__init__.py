"""Infrastructure every stage shares, one module per concern, and the published facts; imports nothing else of
the project."""
