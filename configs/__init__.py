"""Shipped YAML presets (models and runs); see the files in this folder."""
