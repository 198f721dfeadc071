"""flowviz web app: `streamlit run app.py` (or `make run`).

Streamlit runs this file once per visit to draw the page (``__main__``). `streamlit run` also finds the
``st.App`` below and serves it: its start-up hook loads flowviz and starts a training process before the
first visitor arrives (flowviz/ui/server.py), and the routes of rooms (``/room/CODE``: a lecturer's page
followed read-only, flowviz/ui/room_routes.py) beside Streamlit's own.
"""

if __name__ == "__main__":  # a visitor's page (and streamlit.testing's AppTest)
    from flowviz.ui import main

    main()
elif __name__ != "__mp_main__":  # the server imports `app` (training processes import nothing here)
    import streamlit as st

    from flowviz.ui.room_routes import app_routes
    from flowviz.ui.server import lifespan

    app = st.App(__file__, lifespan=lifespan, routes=app_routes())  # /room/CODE: followers of a lecturer's page
