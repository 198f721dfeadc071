"""The task ``batch``: one group of lanes of a batched sweep, its server half (:func:`train_batched`, the groups
spread over the free workers; :func:`train_members`, members that cannot be batched, one worker each) and its
worker half (:func:`batch_task`)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from ...core.config import Config
from ...core.data import Dataset
from .protocol import TaskFailed, dataset_from, encode, request, result_from
from .weights import model_arrays, model_from

__all__ = ["train_batched", "train_members", "batch_task"]


# ------------------------------------------------------------------ server half
def train_batched(
    executor,
    configs: list[Config],
    data: Dataset,
    *,
    log_every: int = 25,
    cancel=None,
    progress: Callable[[int], None] | None = None,
) -> list:
    """``batch.train_batched`` with the members' lanes spread over the free workers of ``executor`` (one group
    each).

    The same numbers as one batch in one process (members are independent); ``progress(step)`` reports
    the slowest group's step. Raises WorkerDied if a worker is lost mid-run.
    """
    from ...training.batch import lane_groups
    from ...training.train import TrainResult

    leases = executor.take_upto(len(lane_groups(configs, executor.size)), cancel)
    if not leases:  # cancelled while waiting: every member ends cancelled at step 0, as in one process
        from ...training.batch import train_batched as in_process

        return in_process(configs, data=data, log_every=log_every, cancel=cancel)
    groups = lane_groups(configs, len(leases))
    for lease in leases[len(groups) :]:
        executor.give(lease, True)
    leases = leases[: len(groups)]
    streams = [
        executor.stream(
            lease, request("batch", data, configs=[configs[i] for i in g], log_every=log_every), cancel, idle=True
        )
        for lease, g in zip(leases, groups)
    ]
    steps, done, out = [0] * len(leases), [False] * len(leases), {}
    try:
        for i, head, arrays in _merged(streams):
            if head["kind"] == "progress":
                steps[i] = int(head["progress"])
                if progress is not None:
                    progress(min(steps))
                continue
            done[i] = True
            for j, (m, res) in enumerate(zip(groups[i], head["results"])):
                out[m] = (model_from(configs[m], data.n_classes, arrays, j), res)
    except TaskFailed:
        done = [True] * len(leases)  # the task failed in the worker; the workers are fine
        raise
    finally:
        for lease, ok in zip(leases, done):
            executor.give(lease, ok)
    results = []
    for i, cfg in enumerate(configs):
        model, res = out[i]
        results.append(TrainResult(cfg, model, data, res["history"], res["metrics"], res["error"]))
    return results


def _merged(streams: list) -> Iterator[tuple[int, dict, dict]]:
    """(index, header, arrays) of several lease streams, interleaved as their replies come."""
    live = dict(enumerate(streams))
    while live:
        for i, s in list(live.items()):
            try:
                got = next(s)
            except StopIteration:
                del live[i]
                continue
            if got is not None:
                yield i, *got


def train_members(
    executor,
    configs: list[Config],
    data: Dataset,
    *,
    log_every: int = 25,
    cancel=None,
    progress: Callable[[int, int], None] | None = None,
) -> list:
    """Each config trained to the end by a worker of its own, as many at once as ``executor`` lends (the
    members of a sweep that cannot be batched): the same numbers as ``flowviz.train`` one by one.

    ``progress(finished, total)`` as members finish. A member that diverged keeps its last finite state
    and says so in its ``error``, as the one-by-one sweep keeps it. Raises WorkerDied if a worker is lost.
    """
    from concurrent.futures import ThreadPoolExecutor

    from .train import train

    finished = [0]
    lock = threading.Lock()

    def one(cfg: Config):
        snaps = list(train(executor, cfg, data, log_every=log_every, cancel=cancel))
        with lock:
            finished[0] += 1
            if progress is not None:
                progress(finished[0], len(configs))
        return result_from(cfg, data, snaps)

    with ThreadPoolExecutor(
        max_workers=max(1, min(executor.size, len(configs))), thread_name_prefix="flowviz-member"
    ) as threads:
        return list(threads.map(one, configs))


# ------------------------------------------------------------------ worker half
def batch_task(header: dict, arrays: dict, cancel) -> Iterator[bytes]:
    """One group of lanes of a batched sweep: progress while it trains, then every member's result (member
    ``j``'s weights under the tag ``j``)."""
    import queue

    from ...training.batch import train_batched as in_process

    cfgs = [Config.from_dict(d) for d in header["configs"]]
    out: queue.SimpleQueue = queue.SimpleQueue()  # progress is called inside train_batched: relay it in order
    box: dict = {}

    def work():
        try:
            box["results"] = in_process(
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
    yield encode(head, {k: v for j, r in enumerate(results) for k, v in model_arrays(r.model, j).items()})
