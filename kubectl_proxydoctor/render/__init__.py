"""Renderers: rich text and JSON. They know the model, never the kernel."""
