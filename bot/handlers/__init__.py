"""Thin adapters from typed callback events to the mirror and other domain services."""
