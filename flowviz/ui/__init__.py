"""The Streamlit page (the only package that imports streamlit)."""


def main() -> None:
    """Draw the page (app.py calls this on every visit). Imported here on first use, so that the server's
    start-up hook (flowviz.ui.server) can import the page's modules itself, quietly."""
    from .page import main as page_main

    page_main()


__all__ = ["main"]
