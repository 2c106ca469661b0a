"""The Textual TUI: presentation only, over the same snapshot and findings as the CLI."""
