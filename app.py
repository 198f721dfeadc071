"""flowviz web app: `streamlit run app.py` (or `make run`)."""

from flowviz.ui import main

main()
