"""One Settings object reads the FLOWVIZ_* environment; the README's table is the same list."""

import re
from dataclasses import fields

from tiny import ROOT

from flowviz.serve.settings import Settings


def _readme_rows() -> dict[str, str]:
    text = (ROOT / "README.md").read_text()
    return dict(re.findall(r"^\| `(FLOWVIZ_[A-Z_]+)` \| ([^|]*?) \|", text, re.M))


def test_every_setting_is_in_the_readme_table_and_every_row_is_a_setting():
    names = {f.metadata["env"] for f in fields(Settings)}
    rows = _readme_rows()
    assert set(rows) == names
    for env, default, _ in Settings.table():  # the default the table states is the one the code uses
        assert rows[env] == default, env


def test_values_are_parsed_and_a_malformed_one_keeps_its_default():
    s = Settings.from_env(
        {
            "FLOWVIZ_WORKERS": "3",
            "FLOWVIZ_UNWATCHED_S": "2.5",
            "FLOWVIZ_WARM": "0",
            "FLOWVIZ_CACHE_ENTRIES": "lots",
            "FLOWVIZ_WORKER_MODE": " thread ",
        }
    )
    assert (s.workers, s.unwatched_s, s.warm, s.cache_entries, s.worker_mode) == (3, 2.5, False, 256, "thread")
    assert s.worker_count() == 3 and Settings.from_env({}) == Settings()


def test_settings_is_the_only_reader_of_the_environment_in_serve_and_ui_and_core_reads_none():
    readers = []
    for p in sorted((ROOT / "flowviz").rglob("*.py")):
        src = p.read_text()
        if re.search(r"environ(\.get)?\s*[\[(]\s*[\"']FLOWVIZ_", src):
            readers.append(p.relative_to(ROOT / "flowviz").as_posix())
    # training is told (FLOWVIZ_CUDA_GRAPHS reaches it as train(..., cuda_graphs=...): tests/unit/test_graphs.py)
    assert readers == []
