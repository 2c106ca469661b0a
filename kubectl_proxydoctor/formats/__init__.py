"""Text formats read by both the collectors and the modes (parsers and their data model only).

Nothing here imports collect/, modes/, checks/, render/, tui/ or cli/.
"""
