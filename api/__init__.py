"""Parley api package."""
