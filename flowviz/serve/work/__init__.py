"""Where the work is done: the executors that lend workers (``executor``: the interface and its table;
``pool``: local processes; ``inprocess``: threads of the server; ``ray_executor``: a Ray cluster), the messages
they carry (``protocol``, with ``weights``: a model's state as message arrays), the worker's loop (``worker``),
and one module per task, each holding its server half and its worker half: ``train``, ``views``,
``instruments``, ``train_batched``, ``measure``."""
