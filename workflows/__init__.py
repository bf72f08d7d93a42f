"""Workflows of the lecture service, one module per workflow."""
