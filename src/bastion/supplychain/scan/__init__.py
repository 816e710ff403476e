"""Static, allow-list artifact scanning (placeholder: being written)."""
