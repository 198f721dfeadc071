"""ASCII notation typeset: ``x_k``, ``t_(k-1)``, ``R^3`` as subscripts and superscripts.

:func:`math_text` is for figures (Plotly's ``<sub>`` where Unicode has no subscript); :func:`typeset` is for the
page's Markdown, which takes no HTML: Unicode, and inline math ($x_{L}$) where Unicode has no subscript.
"""

from __future__ import annotations

import re

__all__ = ["math_text", "typeset", "ASCII_NOTATION"]

_SUB = str.maketrans("0123456789+−-=()", "₀₁₂₃₄₅₆₇₈₉₊₋₋₌₍₎")
_SUP = str.maketrans("0123456789+−-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁻")
_SUB_RE = re.compile(r"(?<![A-CE-Za-z_])([A-Za-zθλμΦ])_(\([^()<>]*\)|[0-9]+|[A-Za-z](?![A-Za-z_]))")
_REAL_RE = re.compile(r"\bR\^(\([^()]*\)|[0-9]+)")

# Unicode's subscripts and superscripts (letters: only those Unicode has)
_USUB = dict(zip("0123456789+−-=()aehijklmnoprstuvxβγρφχ", "₀₁₂₃₄₅₆₇₈₉₊₋₋₌₍₎ₐₑₕᵢⱼₖₗₘₙₒₚᵣₛₜᵤᵥₓᵦᵧᵨᵩᵪ"))
_USUP = dict(zip("0123456789+−-=()nipdk", "⁰¹²³⁴⁵⁶⁷⁸⁹⁺⁻⁻⁼⁽⁾ⁿⁱᵖᵈᵏ"))
# a base (a letter not inside a word, or DV's V) and its subscript: (…), digits, or one or two letters
_USUB_RE = re.compile(r"(?<![A-CE-Za-z_])([A-Za-zθλμΦρεξ∂Σ])_(\([^()]*\)|[0-9]+|[A-Za-z]{1,2}(?![A-Za-z_0-9]))")

_TEX = {"Σ": r"\Sigma", "∂": r"\partial", "ρ": r"\rho", "ε": r"\varepsilon", "ξ": r"\xi"}

ASCII_NOTATION = _USUB_RE  # what :func:`typeset` leaves is notation Unicode cannot write (e.g. X_T)


def math_text(text):
    """ASCII notation as typeset text: x_k -> x<sub>k</sub>, t_10 -> t₁₀, x_(k−1) -> x<sub>k−1</sub>, R^3 -> ℝ³."""
    if not text or not isinstance(text, str):
        return text

    def sub(m):
        base, s = m.group(1), m.group(2)
        s = s[1:-1] if s.startswith("(") else s
        if all(c in "0123456789" for c in s):
            return base + s.translate(_SUB)
        return f"{base}<sub>{s}</sub>"

    def real(m):
        s = m.group(1)
        s = s[1:-1] if s.startswith("(") else s
        return "ℝ" + (s.translate(_SUP) if all(c in "0123456789+−-" for c in s) else f"<sup>{s}</sup>")

    return _SUB_RE.sub(sub, _REAL_RE.sub(real, text))


def typeset(text, latex: bool = True):
    """ASCII notation in Unicode, for Markdown: x_k -> xₖ, x_(k-1) -> xₖ₋₁, a_ij -> aᵢⱼ, R^(2+p) -> ℝ²⁺ᵖ.

    Notation Unicode cannot write (x_L, X_T) becomes inline math for Streamlit's Markdown ($x_{L}$), or stays
    as it is with ``latex=False`` (plain text)."""
    if not text or not isinstance(text, str):
        return text

    def script(table, s):
        s = s[1:-1] if s.startswith("(") else s
        s = s.replace(" ", "")
        return "".join(table[c] for c in s) if all(c in table for c in s) else None

    def sub(m):
        s = script(_USUB, m.group(2))
        if s is not None:
            return m.group(1) + s
        inner = m.group(2)[1:-1] if m.group(2).startswith("(") else m.group(2)
        base = _TEX.get(m.group(1), m.group(1))
        return f"${base}_{{{inner}}}$" if latex and base.isascii() else m.group(0)

    def real(m):
        s = script(_USUP, m.group(1))
        return m.group(0) if s is None else "ℝ" + s

    return _USUB_RE.sub(sub, _REAL_RE.sub(real, text))
