"""What a worker does with a request: a table of tasks, each turning one request into a stream of replies.

The same handlers serve every executor: a worker process of the local pool (:func:`main`, reading its pipe),
a thread of the in-process executor, and (next) a remote actor. A handler gets the decoded request and a
``cancel`` flag (``is_set()``, checked between training steps) and yields encoded replies; an exception
becomes a ``fatal`` reply and the worker goes on serving.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from ...core.config import Config
from ...training.train import train_iter
from .measure import measure_task
from .protocol import CANCEL, dataset_from, decode, encode, fatal_message, snapshot_message, train_state_from

__all__ = ["TASKS", "handle", "main"]


def run_task(header: dict, arrays: dict, cancel) -> Iterator[bytes]:
    """One training run: a snapshot (with its weights and checkpoints) every ``log_every`` steps, the last one
    ``done`` with the state to resume from. With ``resume`` (and weights ``w/<name>``) it goes on from a paused
    run's state; ``until`` stops it after that step."""
    cfg = Config.from_dict(header["config"])
    ds, model, start = dataset_from(header, arrays), None, train_state_from(header, arrays)
    if start is not None:
        import torch

        from ...core.model import build_model

        model = build_model(cfg, ds.n_classes)
        model.load_state_dict({k[2:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("w/")})
    until = header.get("until")
    for s in train_iter(
        cfg,
        data=ds,
        log_every=int(header["log_every"]),
        cancel=cancel,
        keep_state=True,
        cuda_graphs=bool(header.get("cuda_graphs")),
        model=model,
        start=start,
        until=None if until is None else int(until),
    ):
        yield snapshot_message(s)


def batch_task(header: dict, arrays: dict, cancel) -> Iterator[bytes]:
    """One group of lanes of a batched sweep: progress while it trains, then every member's result."""
    import queue
    import threading

    from ...training.batch import train_batched

    cfgs = [Config.from_dict(d) for d in header["configs"]]
    out: queue.SimpleQueue = queue.SimpleQueue()  # progress is called inside train_batched: relay it in order
    box: dict = {}

    def work():
        try:
            box["results"] = train_batched(
                cfgs,
                data=dataset_from(header, arrays),
                log_every=int(header["log_every"]),
                cancel=cancel,
                progress=lambda step, snaps: out.put(step),
            )
        except BaseException as e:  # re-raised below, in the handler's own frame
            box["error"] = e
        finally:
            out.put(None)

    t = threading.Thread(target=work, name="flowviz-batch", daemon=True)
    t.start()
    while (step := out.get()) is not None:
        yield encode({"kind": "progress", "progress": step})
    t.join()
    if "error" in box:
        raise box["error"]
    results = box["results"]
    head = {
        "kind": "result",
        "results": [{"history": r.history, "metrics": r.metrics, "error": r.error} for r in results],
    }
    yield encode(
        head,
        {f"{i}/{k}": v.detach().cpu().numpy() for i, r in enumerate(results) for k, v in r.model.state_dict().items()},
    )


def _model_of(header: dict, arrays: dict):
    """(the trained model, weights ``w/<name>``; the data set) that a request carries."""
    import torch

    from ...core.model import build_model

    ds = dataset_from(header, arrays)
    model = build_model(Config.from_dict(header["config"]), ds.n_classes)
    model.load_state_dict({k[2:]: torch.from_numpy(v) for k, v in arrays.items() if k.startswith("w/")})
    return model.train(False), ds


def reestimate(model, ds, budget_s: float | None, memo: dict | None = None):
    """The run's cost re-estimated after training, with its flow's stiffness measured (flowviz.core.cost): the
    reference solved once on the final pictures' points within the evaluations that ``budget_s`` seconds
    allow each adaptive solve (None: the solvers' own budget), kept in ``memo`` for the pictures.
    Returns (Cost, Stiffness or None, that budget of evaluations or None)."""
    from ...core.cost import estimate, measure_stiffness, prior_eval_s, solve_budget
    from ...training.analysis import reference_points

    c, n = model.config, len(ds.x_train)
    if c.scheme == "plain" or c.viscosity > 0:  # no adaptive solve in its pictures or instruments
        return estimate(c, n), None, None
    cap = solve_budget(estimate(c, n), prior_eval_s(c), budget_s)
    stiff = measure_stiffness(model, reference_points(ds.x_train), probe_evals=cap, memo=memo)
    return estimate(c, n, stiffness=stiff), stiff, cap


def _limits(header: dict, cancel, memo: dict | None = None):
    """The adaptive solves' limits of a task: its cancel flag, and the budget the request carries."""
    from ...core.solvers import solve_limits

    need = header.get("stiffness")
    return solve_limits(max_evals=header.get("max_evals"), cancel=cancel, needs=need[0] if need else None, memo=memo)


def analyse_task(header: dict, arrays: dict, cancel) -> Iterator[bytes]:
    """The views of a trained model (weights ``w/<name>``), and with ``metrics`` its losses and accuracies on
    the data (an imported run): the heavy pictures of a run, made here and not in the server."""
    import torch

    from ...training.analysis import analyse
    from ...training.train import evaluate, run_metrics
    from .protocol import pack

    model, ds = _model_of(header, arrays)
    head: dict = {"kind": "result"}
    if header.get("metrics"):
        tr = evaluate(model, torch.as_tensor(ds.x_train), torch.as_tensor(ds.y_train))
        te = evaluate(model, torch.as_tensor(ds.x_test), torch.as_tensor(ds.y_test))
        head["metrics"] = run_metrics(train=tr, test=te, steps=model.config.train_steps)
    memo: dict = {}
    if not header.get("live") and "budget_s" in header:  # before the final pictures: how stiff is the flow?
        with _limits({}, cancel):
            cost, stiff, cap = reestimate(model, ds, header["budget_s"], memo)
        head["reestimate"] = {
            "seconds": cost.seconds,
            "peak_mb": cost.peak_mb,
            "drivers": list(cost.drivers),
            "parts": [list(p) for p in cost.parts],
        }
        if stiff is not None:
            head["stiffness"] = [stiff.evals, stiff.eval_s, stiff.done]
            header = dict(header, stiffness=head["stiffness"], max_evals=cap)
        head["max_evals"] = header.get("max_evals")
    with _limits(header, cancel, memo):
        views = analyse(model, ds, history=header.get("history") or [], live=bool(header.get("live")), cancel=cancel)
    if views is None:  # cancelled between two stages: this worker is free again at once
        yield encode({"kind": "result", "cancelled": True})
        return
    out: dict = {}
    head["views"] = pack(views, out)
    yield encode(head, out)


def instruments_task(header: dict, arrays: dict, cancel) -> Iterator[bytes]:
    """Each instrument's data of a finished run's model (flowviz.training.prepared) on the box ``extent``, one
    ``instrument`` reply as each is made (name, data or the message why it does not fit), ``cancel`` checked
    between them; then the ``result``."""
    import numpy as np

    from ...training.prepared import each
    from .protocol import pack

    model, ds = _model_of(header, arrays)
    if "budget_s" in header and "stiffness" not in header:  # not measured with the final pictures: measure now
        with _limits({}, cancel):
            _, stiff, cap = reestimate(model, ds, header["budget_s"])
        if stiff is not None:
            header = dict(header, stiffness=[stiff.evals, stiff.eval_s, stiff.done], max_evals=cap)
    with _limits(header, cancel):
        made = each(model, ds, header["extent"], names=header.get("names"), cancel=cancel)
        while (got := next(made, None)) is not None:
            name, obj, msg = got
            out: dict = {}
            tree = pack(obj, out)
            # spectra as complex64: safetensors has no complex128, and the figures draw float32
            yield encode(
                {"kind": "instrument", "name": name, "data": tree, "error": msg},
                {k: v.astype(np.complex64) if np.iscomplexobj(v) else v for k, v in out.items()},
            )
    yield encode({"kind": "result", "cancelled": bool(cancel.is_set())})


def _views():
    """what -> compute(model, data, args): a page's computations on a run's weights (a click's probe, the
    instruments of a snapshot), made here so that a crash in native code ends this worker, not the server."""
    import numpy as np

    from ...training.instruments import adjoint_data, flow_paths, probe_data
    from ...training.prepared import PREPARED
    from ...training.volume import volume_data

    table = {
        "probe_path": lambda m, d, a: flow_paths(m, np.asarray([a["probe"]], np.float32))[:, 0].cpu().numpy(),
        "probe_data": lambda m, d, a: probe_data(m, tuple(a["probe"])),
        "adjoint_live": lambda m, d, a: adjoint_data(m, d.x_train, d.y_train),
        "volume_exact": lambda m, d, a: volume_data(m, d, extent=tuple(a["extent"]), density="exact"),
    }
    table.update({n: (lambda m, d, a, n=n: PREPARED[n](m, d, tuple(a["extent"]))) for n in PREPARED})
    return table


def compute_task(header: dict, arrays: dict, cancel) -> Iterator[bytes]:
    """One computation of :func:`_views` on the weights ``w/<name>`` a request carries: its ``result``."""
    import numpy as np

    from .protocol import pack

    table = _views()
    what = header.get("what")
    if what not in table:
        raise ValueError(f"unknown computation {what!r}; valid: {', '.join(table)}")
    model, ds = _model_of(header, arrays)
    with _limits(header, cancel):
        obj = table[what](model, ds, header.get("args") or {})
    out: dict = {}
    tree = pack(obj, out)
    yield encode(
        {"kind": "result", "data": tree},
        {k: v.astype(np.complex64) if np.iscomplexobj(v) else v for k, v in out.items()},
    )


# task name -> handler(header, arrays, cancel) yielding encoded replies
TASKS: dict[str, Callable[[dict, dict, object], Iterator[bytes]]] = {
    "run": run_task,
    "batch": batch_task,
    "analyse": analyse_task,
    "instruments": instruments_task,
    "measure": measure_task,
    "compute": compute_task,
}


LIMIT_MB = 0.0  # this worker's memory cap above its start (main sets it); named in an over-limit error


def _out_of_memory(e: BaseException) -> bool:
    """An allocation refused under the worker's memory cap (torch's CPU allocator, or Python's own)."""
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and "can't allocate memory" in str(e))


def handle(raw: bytes, cancel) -> Iterator[bytes]:
    """The replies to one request; a failure (an unknown task included) is one ``fatal`` reply."""
    try:
        header, arrays = decode(raw)
        task = TASKS.get(header.get("task"))
        if task is None:
            raise ValueError(f"unknown task {header.get('task')!r}; valid: {', '.join(TASKS)}")
        yield from task(header, arrays, cancel)
    except Exception as e:  # report, keep serving
        if _out_of_memory(e):
            cap = f" of {LIMIT_MB:.0f} MB (FLOWVIZ_WORKER_MB)" if LIMIT_MB > 0 else ""
            e = MemoryError(
                f"the run needed more memory than a worker's limit{cap}; the last state is kept. "
                "Make the keys that drive its cost smaller"
            )
        yield fatal_message(e)


class _PipeCancel:
    """cancel.is_set() for a task: a CANCEL message on the pipe, checked between steps."""

    def __init__(self, conn):
        self.conn, self.flag = conn, False

    def is_set(self) -> bool:
        while not self.flag and self.conn.poll():
            if self.conn.recv_bytes() == CANCEL:
                self.flag = True
        return self.flag


def main(conn, threads: int, limit_mb: float = 0.0) -> None:  # pragma: no cover - runs in the child process
    """A worker process: start-up settings, then serve requests from ``conn`` until it closes."""
    import signal

    import torch

    from .process import limit_memory, tune_malloc

    global LIMIT_MB

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the server ends its workers (forkserver_init: from their start)
    tune_malloc()
    limit_memory(limit_mb)
    LIMIT_MB = limit_mb
    torch.set_num_threads(threads)
    while True:
        try:
            raw = conn.recv_bytes()
        except (EOFError, OSError):
            return
        if raw == CANCEL:  # arrived after its task had ended
            continue
        try:
            for reply in handle(raw, _PipeCancel(conn)):
                conn.send_bytes(reply)
        except (EOFError, OSError):  # the pool closed its end (shut down, or the task cut short): nobody to tell
            return
