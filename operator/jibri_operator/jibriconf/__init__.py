"""jibriconf layer (see ARCHITECTURE.md)."""
