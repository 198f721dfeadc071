"""The command line: ``python -m flowviz {train,eval,sweep,prebuild,presets,pack,video}``.

Bad arguments exit with status 2 and a one-line message, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import warnings
from pathlib import Path

from .core.config import Config
from .core.errors import CheckpointError, FlowvizError, TrainingDiverged

__all__ = ["main"]

DEFAULT_LINK_BASE = "http://localhost:8501/"  # the page a pack's or a video's link reopens
# the video's choices, checked before plotly or torch is imported (flowviz.plots.video has the same tables)
VIDEO_VIEWS = ("characteristics", "lifted", "velocity", "stability", "volume", "adjoint")
VIDEO_SIZES = {"1280x720": (1280, 720), "1920x1080": (1920, 1080)}
VIDEO_FORMATS = (".mp4", ".webm", ".gif")
VIDEO_EXTRAS = ("kaleido", "imageio", "imageio_ffmpeg")
VIDEO_INSTALL = (
    "video needs the optional extras: pip install -r requirements-video.txt (kaleido, imageio, imageio-ffmpeg)"
)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, status 2
        self.exit(2, f"flowviz: error: {message}\n")


def _config_from(args) -> Config:
    if args.preset and args.config:
        raise FlowvizError("give --preset or --config, not both")
    if args.preset:
        from .core.presets import preset

        cfg = preset(args.preset)
    elif args.config:
        p = Path(args.config)
        if not p.is_file():
            raise FlowvizError(f"no config file at {p}")
        cfg = Config.from_json(p.read_text())
    else:
        cfg = Config()
    return cfg.with_sets(args.set or [])


def _cuda_graphs() -> bool:
    """FLOWVIZ_CUDA_GRAPHS, read by the settings (the one reader of FLOWVIZ_* variables); training is told."""
    from .serve.settings import Settings

    return Settings.from_env().cuda_graphs


def _clean(d: dict) -> dict:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}


def cmd_train(args) -> int:
    cfg = _config_from(args)  # checked before torch is imported: a bad argument answers at once
    if cfg.dataset == "csv" and not args.csv:
        raise FlowvizError("dataset=csv needs --csv FILE (columns x1, x2, label)")
    from tqdm import tqdm

    from .core.data import load_csv
    from .runfiles.files import save_run
    from .training.train import train

    data = load_csv(args.csv) if args.csv else None
    bars = []  # made at the first snapshot, so train's warnings (limits, cost estimate) come before it

    def progress(s):
        if not bars:
            bars.append(tqdm(total=cfg.train_steps, file=sys.stderr, unit="step", desc="training", dynamic_ncols=True))
        bar = bars[0]
        bar.update(s.step - bar.n)
        bar.set_postfix(loss=f"{s.loss:.4f}", acc=f"{s.train_accuracy:.3f}", test=f"{s.test_accuracy:.3f}")

    try:
        result = train(cfg, data=data, progress=progress, cuda_graphs=_cuda_graphs())
    except TrainingDiverged as e:
        for bar in bars:
            bar.close()
        save_run(e.result, args.out)
        print(f"flowviz: {e}", file=sys.stderr)
        return 1
    for bar in bars:
        bar.close()
    out = save_run(result, args.out)
    print(json.dumps(_clean(result.metrics)))
    print(f"wrote {out}/", file=sys.stderr)
    return 0


def cmd_eval(args) -> int:
    if not Path(args.run).is_dir():  # before torch is imported
        raise CheckpointError(f"no run directory at {args.run}")
    import numpy as np

    from .runfiles.files import load_run
    from .training.analysis import diagnostics

    model, ds = load_run(args.run)
    changes = Config().with_sets(args.set or [])
    delta = {k: getattr(changes, k) for k in (a.split("=", 1)[0].strip() for a in (args.set or []))}
    if delta:
        _guard_eval(model.config.replace(**delta), len(ds.x_train))
        model = model.rediscretised(**delta)
    out = {"n_steps": model.L, "scheme": model.config.scheme}
    for split, x, y in (("train", ds.x_train, ds.y_train), ("test", ds.x_test, ds.y_test)):
        if len(x):
            p = np.clip(model.predict_proba(x), 1e-12, 1)
            out[f"{split}_accuracy"] = float((p.argmax(1) == y).mean())
            out[f"{split}_loss"] = float(-np.log(p[np.arange(len(y)), y]).mean())
    diag = diagnostics(model, ds.x_train, ds.extent(), max_points=100)
    out["disc_error"] = diag.disc_error
    out["min_jac_det"] = float(diag.min_jac_det.min())
    print(json.dumps(_clean(out)))
    return 0


MAX_EVAL_SECONDS = 3600.0  # what eval takes on: the cost model's final-pictures part, an upper bound of its work


def _guard_eval(cfg: Config, n_train: int) -> None:
    """Refuse an evaluation of ``cfg`` (a saved run re-discretised) that the cost model says would not fit in
    half this machine's memory or take more than MAX_EVAL_SECONDS, before anything is allocated."""
    from .core.cost import Cost, estimate, machine_mb
    from .core.errors import ConfigError

    c = estimate(cfg, n_train)
    cost = Cost(c.part("analysis"), c.peak_mb, c.drivers)
    total = machine_mb()
    if cost.seconds > MAX_EVAL_SECONDS or (total is not None and cost.peak_mb > total / 2):
        raise ConfigError(
            f"evaluating this run at n_steps={cfg.n_steps}, scheme={cfg.scheme} would take "
            f"{cost.describe()}: more than eval takes on (an hour, half this machine's memory)"
        )


def _warn_sweep_cost(cfg: Config, key: str, values: list, data) -> None:
    """One line with the members' estimated cost (one after another) when it is over a server's budget."""
    from .core.cost import Cost, estimate, over_budget
    from .core.data import make_dataset

    n_train = None if data is None else len(make_dataset(cfg, data).x_train)
    costs = [estimate(cfg.replace(**{key: v}), n_train) for v in values]
    total = Cost(
        sum(c.seconds for c in costs), max(c.peak_mb for c in costs), max(costs, key=lambda c: c.seconds).drivers
    )
    why = over_budget(total)
    if why:
        warnings.warn(why.replace("this run", f"this sweep of {len(values)} runs"), stacklevel=2)


def _depths(text: str, flag: str, form: str, sep: str, cfg: Config, count: int | None = None) -> list[int]:
    """The depths L of ``flag``'s text (``form``, separated by ``sep``), each a valid n_steps of ``cfg``;
    ConfigError in one line otherwise."""
    from .core.errors import ConfigError, echo

    parts = [p.strip() for p in str(text).split(sep)]
    if len(text) > 200 or not all(p.isdigit() and len(p) < 7 for p in parts) or (count and len(parts) != count):
        raise ConfigError(f"{flag} takes {form}: whole numbers separated by {sep!r}; got {echo(text)}")
    for v in parts:
        cfg.replace(n_steps=int(v))  # the config's own checks of a depth
    return [int(v) for v in parts]


def cmd_sweep(args) -> int:
    from .core.data import load_csv
    from .plots.sweep import coarse_to_fine_curve, side_by_side, sweep_html
    from .training.analysis import analyse
    from .training.refine import coarse_levels
    from .training.sweep import coarse_to_fine, parse_vary, run_sweep

    cfg = _config_from(args)
    key, values = parse_vary(args.vary, cfg)
    data = load_csv(args.csv) if args.csv else None
    if cfg.dataset == "csv" and data is None:
        raise FlowvizError("dataset=csv needs --csv FILE (columns x1, x2, label)")
    _warn_sweep_cost(cfg, key, values, data)
    extra_L = _depths(args.transfer_to, "--transfer-to", "L1,L2", ",", cfg) if args.transfer_to else []
    c2f = _depths(args.coarse_to_fine, "--coarse-to-fine", "L0:L1", ":", cfg, count=2) if args.coarse_to_fine else None
    if c2f:
        coarse_levels(*c2f)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    last = [-1.0]

    def progress(frac, text):
        if frac - last[0] >= 0.1 or frac >= 1.0:
            print(f"[{frac:4.0%}] {text}", file=sys.stderr)
            last[0] = frac

    if args.workers < 1:
        raise FlowvizError(f"--workers must be at least 1, not {args.workers}")
    pool = None
    if args.executor == "ray":  # the cluster at RAY_ADDRESS, or a local one of --workers CPUs
        from .serve.work.ray_executor import RayExecutor, ray_started

        ray_started(num_cpus=args.workers if args.workers > 1 else None)
        pool = RayExecutor()
    elif args.workers > 1 and not args.sequential:
        from .serve.work.pool import ProcessPool

        pool = ProcessPool(args.workers)
    if pool is not None:
        pool.cuda_graphs = _cuda_graphs()
    try:
        s = run_sweep(
            cfg,
            key,
            values,
            data=data,
            batched=not args.sequential,
            progress=progress,
            transfer_to=extra_L,
            pool=pool,
            cuda_graphs=_cuda_graphs(),
        )
        doc, extra = json.loads(s.to_json()), []
        if len(s.members) >= 2:  # the pictures and coarse to fine by the pool's workers too, when there is a pool
            a, b = s.members[0], s.members[-1]
            va, vb = (
                (pool.measure("views", s.data, models=[m.model]) for m in (a, b))
                if pool is not None
                else (analyse(m.model, s.data, with_reference=False) for m in (a, b))
            )
            extra.append(side_by_side(va, vb, (f"{key} = {a.value}", f"{key} = {b.value}")))
        if c2f:
            lo, hi = c2f
            c = (
                pool.measure("coarse_to_fine", s.data, config=cfg, L_start=lo, L_end=hi)
                if pool is not None
                else coarse_to_fine(cfg, L_start=lo, L_end=hi, data=s.data)
            )
            extra.append(coarse_to_fine_curve(c))
            doc["coarse_to_fine"] = {
                "levels": c.levels,
                "jumps": c.jumps,
                "cost": c.cost,
                "wall_s": c.wall_s,
                "final": _clean(c.result.metrics),
                "scratch_cost": c.scratch_cost,
                "scratch_wall_s": c.scratch_wall_s,
                "scratch_final": _clean(c.scratch.metrics) if c.scratch else None,
            }
    finally:
        if pool is not None:
            pool.shutdown()
    (out / "sweep.json").write_text(json.dumps(doc, indent=2))
    (out / "sweep.html").write_text(sweep_html(s, extra))
    for r in s.records():
        print(json.dumps(_clean(r)))
    print(f"wrote {out}/sweep.json and {out}/sweep.html", file=sys.stderr)
    return 0


def cmd_prebuild(args) -> int:
    import time

    from .core.presets import preset_configs, preset_names
    from .runfiles import cache
    from .serve.settings import Settings
    from .training.train import train

    settings = Settings.from_env()
    if cache.cache_dir(settings) is None:
        raise FlowvizError("the disk cache is off (FLOWVIZ_CACHE_DIR=off): nothing to prebuild into")
    names = args.only.split(",") if args.only else preset_names()
    for name in names:
        for cfg in preset_configs(name.strip()):
            if not args.force and cache.load(cfg, settings=settings) is not None:
                print(f"{name:16s} {cfg.key()} cached already", file=sys.stderr)
                continue
            t = time.perf_counter()
            try:
                r = train(cfg, cuda_graphs=_cuda_graphs())
            except TrainingDiverged as e:
                print(f"{name:16s} {cfg.key()} diverged: {e}", file=sys.stderr)
                continue
            cache.store(cfg, r.model, r.history, r.metrics, settings=settings, kept=r.kept, train_state=r.train_state)
            print(
                f"{name:16s} {cfg.key()} trained in {time.perf_counter() - t:5.1f} s, "
                f"test accuracy {r.metrics['test_accuracy']:.3f}",
                file=sys.stderr,
            )
    print(f"cache: {cache.cache_dir(settings)} ({len(cache.entries(settings))} runs)")
    return 0


def cmd_presets(args) -> int:
    from .core.presets import preset_info, preset_names

    for name in preset_names():
        print(f"{name:16s} {preset_info(name)['title']}")
    return 0


def _trained(cfg: Config, *, fresh: bool = False):
    """(model, data, history, metrics, result) of ``cfg``: from the disk cache (result None), else trained here
    and cached (``fresh``: trained here in any case, so the result keeps its checkpoints)."""
    from .core.data import make_dataset
    from .runfiles import cache
    from .serve.settings import Settings
    from .training.train import train

    settings = Settings.from_env()
    hit = None if fresh else cache.load(cfg, settings=settings)
    if hit is not None:
        model, history, metrics = hit[:3]  # (kept checkpoints and the resume state follow)
        return model.train(False), make_dataset(cfg), history, metrics, None
    print(f"training {cfg.key()} ({cfg.train_steps} steps)", file=sys.stderr)
    r = train(cfg, cuda_graphs=_cuda_graphs())
    cache.store(cfg, r.model, r.history, r.metrics, settings=settings)
    return r.model, r.data, r.history, r.metrics, r


def _pack_presets(args) -> list[tuple[str, Config]]:
    """Each --preset with the --set overrides, checked before anything is imported or trained."""
    from .core.presets import preset

    return [(name, preset(name).with_sets(args.set or [])) for name in args.preset]


def cmd_pack(args) -> int:
    from .core.presets import preset_info

    runs = _pack_presets(args)
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise FlowvizError(f"--out {out} is a file, not a directory")
    from .plots.pack import pack_files, run_meta
    from .training.packdata import pack_data

    pages = []
    for name, cfg in runs:
        info = preset_info(name)
        model, data, history, metrics, result = _trained(cfg)
        pd = pack_data(model, data, history=history, probe_at=info.get("probe"), result=result)
        pages.append(
            dict(
                name=name,
                data=pd,
                title=info["title"],
                description=info["description"],
                meta=run_meta(cfg, name, metrics, args.link_base),
            )
        )
    files = pack_files(pages)
    out.mkdir(parents=True, exist_ok=True)
    for fname, text in files.items():
        (out / fname).write_text(text, encoding="utf-8")
        print(f"{out / fname}  {len(text.encode()) / 1e6:.2f} MB", file=sys.stderr)
    return 0


def _video_args(args) -> tuple[tuple[int, int], str]:
    """(size, format) of the video arguments, checked before anything is imported or trained."""
    fmt = Path(args.out).suffix.lower()
    if fmt not in VIDEO_FORMATS:
        raise FlowvizError(f"--out must end in {', '.join(VIDEO_FORMATS)}, not {Path(args.out).name!r}")
    if args.size not in VIDEO_SIZES:
        raise FlowvizError(f"--size must be one of {', '.join(VIDEO_SIZES)}, not {args.size!r}")
    if not (0 < args.fps <= 60) or not math.isfinite(args.fps):
        raise FlowvizError(f"--fps must be above 0 and at most 60, not {args.fps:g}")
    return VIDEO_SIZES[args.size], fmt


def _video_missing() -> str | None:
    """The one line saying what to install when an extra of requirements-video.txt does not import."""
    import importlib

    for name in VIDEO_EXTRAS:
        try:
            importlib.import_module(name)
        except ImportError:
            return VIDEO_INSTALL
    return None


def cmd_video(args) -> int:
    cfg = _config_from(args)
    size, fmt = _video_args(args)
    if args.over == "layers" and args.view not in VIDEO_VIEWS:
        raise FlowvizError(f"--view {args.view!r} does not animate; animated views: {', '.join(VIDEO_VIEWS)}")
    if not Path(args.out).resolve().parent.is_dir():
        raise FlowvizError(f"no directory for --out {args.out}")
    why = _video_missing()
    if why:
        raise FlowvizError(why)
    from .plots import presentation
    from .plots.pack import run_meta, training_figure
    from .plots.video import VIEWS, render_frames, write_video
    from .training.analysis import analyse
    from .training.packdata import training_frames
    from .training.prepared import PREPARED

    model, data, history, metrics, result = _trained(cfg, fresh=args.over == "training")
    views = analyse(model, data, history=history)
    if args.over == "training":
        tf = training_frames(result, views.extent)
        if tf is None:
            raise FlowvizError("this run keeps no training checkpoints: --over training has nothing to show")
        fig = training_figure(tf, data)
    else:
        source, build = VIEWS[args.view]
        if source == "views" and args.view == "lifted" and views.lifted is None:
            raise FlowvizError("--view lifted needs a run with a lift (lift >= 1)")
        fig = build(views if source == "views" else PREPARED[source](model, data, tuple(views.extent)))
    fig = presentation(fig)  # the page's projector style: large type for slides
    images = render_frames(fig, size)
    write_video(images, args.out, args.fps, meta=run_meta(cfg, args.preset, metrics, args.link_base))
    print(
        f"{args.out}  {len(images)} frames at {size[0]}x{size[1]}, {args.fps:g} fps, "
        f"{Path(args.out).stat().st_size / 1e6:.2f} MB",
        file=sys.stderr,
    )
    return 0


def build_parser() -> argparse.ArgumentParser:
    ap = _Parser(prog="python -m flowviz", description="A residual network seen as a continuous flow.")
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=_Parser)
    t = sub.add_parser("train", help="train a config and write a run directory")
    g = t.add_argument_group("config")
    g.add_argument("--preset", help="a named config (see: presets)")
    g.add_argument("--config", help="a config JSON file")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key (repeatable)")
    t.add_argument("--csv", help="points for dataset=csv: a CSV with columns x1, x2, label")
    t.add_argument("--out", required=True, help="run directory to write")
    t.set_defaults(fn=cmd_train)
    e = sub.add_parser("eval", help="re-evaluate a saved run, re-discretised where the time mode allows")
    e.add_argument("--run", required=True, help="run directory written by train")
    e.add_argument("--set", action="append", metavar="KEY=VALUE", help="n_steps, scheme, partition, partition_ratio")
    e.set_defaults(fn=cmd_eval)
    w = sub.add_parser("sweep", help="train one member per value of a key and compare them")
    g = w.add_argument_group("config")
    g.add_argument("--preset", help="a named config (see: presets)")
    g.add_argument("--config", help="a config JSON file")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key (repeatable)")
    w.add_argument(
        "--vary",
        required=True,
        metavar="KEY=V1,V2,...",
        help="n_steps, horizon, scheme, time_mode or smoothness, e.g. n_steps=1,2,4,8,16,32,64",
    )
    w.add_argument("--csv", help="points for dataset=csv")
    w.add_argument("--sequential", action="store_true", help="train members one by one (default: batched)")
    w.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="spread the batch's lanes over N training processes (one core each; starting them takes "
        "a few seconds, so it pays for long sweeps). Default 1: this process",
    )
    w.add_argument(
        "--executor",
        choices=("local", "ray"),
        default="local",
        help="local: this machine (default); ray: a Ray cluster (RAY_ADDRESS, or a local one started "
        "here), members and lane groups spread over its CPUs (needs the ray extra)",
    )
    w.add_argument("--transfer-to", metavar="L1,L2", help="extra L' columns for the depth-transfer matrix")
    w.add_argument("--coarse-to-fine", metavar="L0:L1", help="also train coarse to fine from L0 to L1")
    w.add_argument("--out", required=True, help="directory for sweep.json and sweep.html")
    w.set_defaults(fn=cmd_sweep)
    b = sub.add_parser("prebuild", help="train every scenario ahead of a lecture into the disk cache")
    b.add_argument("--only", metavar="NAME,NAME", help="just these presets")
    b.add_argument("--force", action="store_true", help="train again even when cached")
    b.set_defaults(fn=cmd_prebuild)
    k = sub.add_parser("pack", help="write the lecture pack: one self-contained HTML page per scenario, and an index")
    k.add_argument("--preset", action="append", required=True, metavar="NAME", help="a scenario (repeatable)")
    k.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key of every scenario")
    k.add_argument("--out", required=True, help="directory for index.html and one NAME.html per scenario")
    k.add_argument(
        "--link-base",
        default=DEFAULT_LINK_BASE,
        metavar="URL",
        help=f"the page the pack's links reopen (default {DEFAULT_LINK_BASE})",
    )
    k.set_defaults(fn=cmd_pack)
    v = sub.add_parser(
        "video", help="render an animated view frame by frame as .mp4, .webm or .gif (needs requirements-video.txt)"
    )
    g = v.add_argument_group("config")
    g.add_argument("--preset", help="a named config (see: presets)")
    g.add_argument("--config", help="a config JSON file")
    g.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a key (repeatable)")
    v.add_argument("--view", default="characteristics", help="the animated view (default characteristics)")
    v.add_argument(
        "--over",
        choices=("layers", "training"),
        default="layers",
        help="layers: one frame per step k (default); training: one per training checkpoint "
        "(the decision function F = u(0, ·))",
    )
    v.add_argument("--size", default="1280x720", help="1280x720 (default) or 1920x1080")
    v.add_argument("--fps", type=float, default=4.0, help="frames per second (default 4)")
    v.add_argument("--out", required=True, help="the video file: .mp4, .webm or .gif")
    v.add_argument(
        "--link-base",
        default=DEFAULT_LINK_BASE,
        metavar="URL",
        help=f"the page the video's link reopens (default {DEFAULT_LINK_BASE})",
    )
    v.set_defaults(fn=cmd_video)
    p = sub.add_parser("presets", help="list the named configs")
    p.set_defaults(fn=cmd_presets)
    return ap


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .serve.work.process import tune_malloc

    tune_malloc()
    with warnings.catch_warnings():
        # a key beyond a server's limit, a run over a server's budget (with its estimate): one line each
        warnings.showwarning = _one_line
        return _run(args)


def _one_line(message, category, filename, lineno, file=None, line=None):
    print(f"flowviz: warning: {message}", file=sys.stderr)


def _run(args) -> int:
    try:
        return args.fn(args)
    except FlowvizError as e:
        print(f"flowviz: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        print(f"flowviz: error: {e.strerror or e}: {getattr(e, 'filename', '') or ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("flowviz: interrupted", file=sys.stderr)
        return 130
