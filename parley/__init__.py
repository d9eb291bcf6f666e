"""Parley parley package."""
