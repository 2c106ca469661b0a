"""Screens pushed over the main services view."""
