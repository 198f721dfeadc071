"""flowviz as an installed package: `pip install .` gives a working `import flowviz` and `python -m flowviz`
outside the checkout, with its shipped files (presets, style sheets, the dictionary) inside the package."""

import shutil
import subprocess
import sys
import tomllib
import venv
from pathlib import Path

import pytest
from tiny import ROOT


def test_every_package_of_the_tree_is_listed_for_the_wheel():
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {".".join(p.parent.relative_to(ROOT).parts) for p in (ROOT / "flowviz").rglob("__init__.py")}
    assert found <= listed, f"packages missing from pyproject.toml: {sorted(found - listed)}"
    assert listed - found == {"flowviz._assets"}


@pytest.mark.slow
def test_pip_install_gives_a_package_that_runs_outside_the_checkout(tmp_path):
    """A copy of the tracked tree is built into a wheel and installed, without dependencies, into a fresh venv
    that sees this environment's packages (torch is not installed twice); then it is used from elsewhere."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    src = tmp_path / "src"
    for f in files:
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "-q",
            "--no-deps",
            "--no-build-isolation",
            str(src),
            "-w",
            str(tmp_path / "dist"),
        ],
        check=True,
        capture_output=True,
    )
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)  # this environment's pip installs into it (--python)
    py = env_dir / "bin" / "python"
    site = subprocess.run(
        [str(py), "-c", "import site; print(site.getsitepackages()[0])"], capture_output=True, text=True, check=True
    ).stdout.strip()
    ours = subprocess.run(
        [sys.executable, "-c", "import site; print(site.getsitepackages()[0])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(site, "deps.pth").write_text(ours + "\n")
    wheel = next((tmp_path / "dist").glob("flowviz-*.whl"))
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "-q", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )

    away = tmp_path / "elsewhere"
    away.mkdir()
    presets = subprocess.run([str(py), "-m", "flowviz", "presets"], cwd=away, capture_output=True, text=True)
    assert presets.returncode == 0, presets.stderr
    assert "moons" in presets.stdout and "rings" in presets.stdout
    script = (
        "import flowviz\n"
        "cfg = flowviz.Config(n_samples=120, n_steps=4, width=8, train_steps=20)\n"
        "r = flowviz.train(cfg)\n"
        "print(flowviz.__file__)\n"
        "print(r.model.trajectory(__import__('torch').zeros(5, 2)).shape)\n"
        "print(len(flowviz.preset_names()))\n"
    )
    out = subprocess.run([str(py), "-c", script], cwd=away, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    where, shape, n_presets = out.stdout.split("\n")[:3]
    assert shape == "torch.Size([5, 5, 2])"
    assert where.startswith(site) and not where.startswith(str(ROOT))
    assert int(n_presets) == len(list((ROOT / "assets" / "presets").glob("*.json")))
