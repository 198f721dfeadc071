"""What a video for slides costs: kaleido's start, seconds per frame and bytes per frame of each size and format,
and the ratio of flowviz.plots.video.estimate (what the page states before it starts) to what was measured.

Trains the scenario (default moons), builds its characteristics figure in the presentation style, renders every
frame at 1280 x 720 and 1920 x 1080 (kaleido, one server for all), and writes each format.

    python bench/video.py [--preset moons] [--set KEY=VALUE ...] [--view characteristics]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import plotly.graph_objects as go  # noqa: E402

import flowviz  # noqa: E402
from flowviz.plots import presentation, video  # noqa: E402
from flowviz.training.analysis import analyse  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="moons")
    ap.add_argument("--set", action="append", default=[], help="config overrides KEY=VALUE")
    ap.add_argument("--view", default="characteristics", choices=[k for k, v in video.VIEWS.items() if v[0] == "views"])
    ap.add_argument("--fps", type=float, default=4.0)
    a = ap.parse_args(argv)
    cfg = flowviz.preset(a.preset).with_sets(a.set)
    r = flowviz.train(cfg)
    fig = presentation(video.VIEWS[a.view][1](analyse(r.model, r.data, history=r.history)))
    n = video.frame_count(fig)
    print(f"{a.preset} {a.view}: {n} frames, {a.fps:g} fps")
    import kaleido

    video._browser()
    t = time.perf_counter()
    kaleido.start_sync_server(silence_warnings=True, mathjax=False)
    try:
        video.render_frames(go.Figure(), (320, 180))  # the browser's start, timed apart
        start = time.perf_counter() - t
        print(f"kaleido start and a first small frame: {start:.1f} s")
        for name, size in video.SIZES.items():
            t = time.perf_counter()
            images = video.render_frames(fig, size)
            per = (time.perf_counter() - t) / n
            with tempfile.TemporaryDirectory() as d:
                for fmt in video.FORMATS:
                    t = time.perf_counter()
                    p = video.write_video(images, Path(d) / f"v{fmt}", a.fps)
                    enc = time.perf_counter() - t
                    size_b = p.stat().st_size
                    est = video.estimate(n, size, a.fps, fmt)
                    took = start + n * per + enc
                    print(
                        f"{name} {fmt:5s}: render {per:.2f} s/frame, encode {enc:.1f} s, {size_b / 1e6:.2f} MB "
                        f"({size_b / n / 1e3:.0f} kB/frame); estimate / measured: bytes {est.bytes / size_b:.2f}, "
                        f"seconds {est.seconds / took:.2f}"
                    )
    finally:
        kaleido.stop_sync_server(silence_warnings=True)


if __name__ == "__main__":
    main()
