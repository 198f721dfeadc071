"""Notices on the page: every text that may echo a user's input goes through ``notice``, as plain text."""

from __future__ import annotations

import streamlit as st

from .plaintext import literal

__all__ = ["notice", "KINDS"]

KINDS = ("warning", "error", "info", "success")


def notice(text: str, kind: str = "warning", where=None) -> None:
    """Show ``text`` in an alert box of ``kind`` (one of KINDS) in ``where`` (the page, the sidebar, a column),
    literally: markdown in it is not interpreted, and it is cut to a readable length (plaintext.literal)."""
    if kind not in KINDS:
        raise ValueError(f"unknown notice kind {kind!r}; valid: {', '.join(KINDS)}")
    getattr(where if where is not None else st, kind)(literal(text))
