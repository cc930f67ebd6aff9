"""Tiny Lambda handlers for the runner's test templates (imported through the templates' CodeUri, not by pytest)."""
