"""flowviz web app: `streamlit run app.py` (or `make run`)."""

from flowviz.ui import main

# Streamlit runs this file as __main__; the guard keeps worker processes (which re-import the main module
# under another name) from starting a page of their own.
if __name__ == "__main__":
    main()
