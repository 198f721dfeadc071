"""The Streamlit page (the only package that imports streamlit)."""

from .page import main

__all__ = ["main"]
