"""Parley gateway package."""
