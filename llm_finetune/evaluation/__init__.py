"""Offline metrics (no evaluate.load: it needs the Hub)."""
