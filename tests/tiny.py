"""What the tests share: the repository root and the tiny runs (a few hundred points, a few dozen steps:
well under a second each on one core). Files that need a variant derive it with ``.replace``."""

from pathlib import Path

from flowviz import Config

ROOT = Path(__file__).resolve().parent.parent

TINY = Config(n_samples=120, n_steps=4, width=8, train_steps=30)  # runs that only have to finish
SMALL = Config(n_samples=200, n_steps=6, width=8, train_steps=60)  # runs whose numbers are compared
SWEEP = SMALL.replace(n_steps=16, train_steps=40, lr=0.02, seed=3)  # sweeps, which vary the depth from the default


def link(config: Config) -> dict[str, str]:
    """The link parameters of ``config``'s keys that differ from the defaults."""
    default = Config().to_query()
    return {k: v for k, v in config.to_query().items() if v != default[k]}


def cli_sets(config: Config) -> list[str]:
    """``--set KEY=VALUE`` arguments for ``config``'s keys that differ from the defaults."""
    return [arg for k, v in link(config).items() for arg in ("--set", f"{k}={v}")]


def wait_for(pred, timeout: float = 60) -> bool:
    """True as soon as ``pred()`` is, False after ``timeout`` seconds (polled every 20 ms)."""
    import time

    t = time.time()
    while time.time() - t < timeout:
        if pred():
            return True
        time.sleep(0.02)
    return False
