"""Placeholder: this command is added by its own issue."""
