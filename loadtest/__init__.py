"""Parley loadtest package."""
