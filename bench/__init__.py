"""Parley bench package."""
