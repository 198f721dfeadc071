"""The room's link in the lecturer's QR dialog breaks only between its parts, never inside the code."""

import re

from flowviz.ui.room_ui import link_html


def test_the_room_link_breaks_only_after_a_slash_and_keeps_the_code_whole():
    url = "http://192.168.10.200:8501/room/K7P2QX"
    text = link_html(url)
    spans = re.findall(r"<span style='white-space:nowrap'>([^<]*)</span>", text)
    assert "/".join(spans) == url  # every character inside an unbreakable part
    assert "K7P2QX" in spans and "192.168.10.200:8501" in spans
    assert re.sub(r"<span[^>]*>[^<]*</span>", "", text).count("<wbr>") == url.count("/")  # break points: "/" only
    assert "break-all" not in text and "anywhere" not in text


def test_the_link_is_text_not_markup():
    assert "<script>" not in link_html("http://x/room/<script>")
