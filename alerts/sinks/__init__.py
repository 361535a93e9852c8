"""Sinks: one module per kind."""
