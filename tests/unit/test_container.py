"""The container recipe and the server settings, checked without a Docker engine."""

import re
import tomllib

from tiny import ROOT


def _instructions():
    text = (ROOT / "Dockerfile").read_text()
    text = re.sub(r"\\\n", " ", text)
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]


def test_streamlit_config_is_safe():
    cfg = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    s = cfg["server"]
    assert s["headless"] is True and s["enableXsrfProtection"] is True
    assert s["maxUploadSize"] <= 32 and s["fileWatcherType"] == "none"
    assert cfg["browser"]["gatherUsageStats"] is False
    assert cfg["client"]["showErrorDetails"] == "none"  # no tracebacks reach the page


def test_dockerfile_is_non_root_serves_8501_with_a_healthcheck_and_copies_what_exists():
    ins = _instructions()
    ops = [i.split()[0] for i in ins]
    assert ops[0] == "FROM" and "python" in ins[0]
    for i in ins:
        if i.startswith("COPY"):
            for src in i.split()[1:-1]:
                assert (ROOT / src).exists(), f"Dockerfile copies {src}, which does not exist"
    user = [i for i in ins if i.startswith("USER")]
    assert user and user[-1].split()[1] not in ("root", "0")
    assert ops.index("USER") > max(k for k, o in enumerate(ops) if o == "RUN")  # nothing runs as root after
    assert any(i.startswith("EXPOSE 8501") for i in ins)
    hc = next(i for i in ins if i.startswith("HEALTHCHECK"))
    assert "/_stcore/health" in hc
    assert any(i.startswith("ARG TORCH_INDEX=") and "/whl/cpu" in i for i in ins)  # CPU by default
    assert any("--index-url" in i and "TORCH_INDEX" in i for i in ins)  # the build argument picks CUDA
    cmd = next(i for i in ins if i.startswith("CMD"))
    assert "streamlit" in cmd and "8501" in cmd


def test_dockerignore_keeps_the_venv_and_artifacts_out():
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored and "test-artifacts" in ignored


def test_the_ray_extra_is_one_build_argument_away_and_pinned_in_one_place():
    ins = _instructions()
    assert any(i.startswith("ARG EXTRAS=") for i in ins)
    run = next(i for i in ins if i.startswith("RUN pip install --no-deps"))
    assert 'if [ "${EXTRAS}" = "ray" ]; then pip install -r requirements-ray.txt' in run
    pin = [ln for ln in (ROOT / "requirements-ray.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["dynamic"]
    assert extras["optional-dependencies"]["ray"] == {"file": ["requirements-ray.txt"]}  # the pin lives there only
    assert pin == ["ray==2.60.0"]
    assert "requirements-ray.txt" in (ROOT / "Makefile").read_text()  # `make test` installs it: the suite tests it
