"""User text shown as text: the one helper every notice goes through (pure: no streamlit).

Streamlit's alerts (st.warning, st.error, ...) render their body as GitHub-flavoured markdown, so a link
value like ``[Login](https://evil.example)`` became a clickable link, a key with ``### ...`` a heading, and
``![x](https://...)`` an image every visitor's browser fetched. :func:`literal` turns any text into markdown
source that renders as exactly that text:

- every ASCII punctuation character is backslash-escaped (CommonMark allows it for all of them): no links,
  images, emphasis, code spans, headings, lists, tables, HTML, math or ``:color[...]`` directives;
- GFM's bare autolinks (``https://...``, ``www.x``, ``a@b.c``) are found in the text after escapes are
  resolved, so a WORD JOINER (U+2060, invisible) follows each ``:`` and ``@`` and precedes the ``.`` after a
  ``w``: the patterns no longer match, and the page shows the same characters;
- line breaks and other control characters become spaces (a notice is one paragraph), and the text is cut.

:func:`shown` is the inverse: the characters a reader sees; :func:`is_inert` checks markdown source for
anything Streamlit would interpret (tests use both; a browser test checks the rendering itself).
"""

from __future__ import annotations

import re

__all__ = ["literal", "shown", "clip", "is_inert", "NOTICE_LIMIT"]

NOTICE_LIMIT = 600  # characters of one notice; each echoed value inside is already cut (core.errors.echo)
WJ = "\u2060"
_PUNCT = re.compile(r"([!-/:-@\[-`{-~])")  # the ASCII punctuation characters: ! .. /, : .. @, [ .. `, { .. ~
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2066-\u2069]+")  # and bidi overrides
_UNESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def clip(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters (an ellipsis marks a cut); invisible controls go."""
    text = _CONTROL.sub(" ", str(text).replace(WJ, "")).strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


def literal(text: str, limit: int = NOTICE_LIMIT) -> str:
    """Markdown source that Streamlit renders as ``clip(text, limit)``, character for character."""
    s = _PUNCT.sub(r"\\\1", clip(text, limit))
    s = s.replace("\\:", "\\:" + WJ).replace("\\@", "\\@" + WJ)  # https:// , mailto: , a@b.c
    return re.sub(r"(?i)(?<=w)\\\.", WJ + r"\\.", s)  # www.


def shown(source: str) -> str:
    """The text a reader sees for markdown made by :func:`literal` (escapes resolved, word joiners dropped)."""
    return _UNESCAPE.sub(r"\1", source).replace(WJ, "")


# after escapes are resolved, these would still become links or emoji (GFM autolink literals, shortcodes)
_LIVE_TEXT = re.compile("(?i):(?!\u2060)|www\\.|@(?!\u2060)")


def is_inert(source: str) -> bool:
    """True if Streamlit's markdown shows ``source`` as plain text: every ASCII punctuation character is
    escaped, no line structure, and no autolink or shortcode pattern survives in the resolved text."""
    if _CONTROL.search(source):
        return False
    bare = re.sub(r"\\[!-/:-@\[-`{-~]", "", source)  # drop each escape pair; what is left must be plain
    return not _PUNCT.search(bare) and not _LIVE_TEXT.search(_UNESCAPE.sub(r"\1", source))
