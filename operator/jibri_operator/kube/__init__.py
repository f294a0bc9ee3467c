"""kube layer (see ARCHITECTURE.md)."""
