"""Where flowviz's shipped files are (presets, style sheets, the dictionary): ``flowviz/_assets`` inside an
installed package, ``assets/`` beside the package in a checkout."""

from pathlib import Path

__all__ = ["ASSETS"]

_PACKAGE = Path(__file__).resolve().parents[1]
ASSETS = _PACKAGE / "_assets" if (_PACKAGE / "_assets" / "presets").is_dir() else _PACKAGE.parent / "assets"
