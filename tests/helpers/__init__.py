"""Helpers the test modules of a tier share (never a test module: pytest collects nothing here). The tiny runs,
the repository root and the small utilities every tier uses are in tests/tiny.py."""
