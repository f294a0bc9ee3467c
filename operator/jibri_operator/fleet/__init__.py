"""fleet layer (see ARCHITECTURE.md)."""
