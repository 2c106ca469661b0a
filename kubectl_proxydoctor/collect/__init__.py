"""Read-only collectors: one module per kernel or API source, each returning text or a reason."""
