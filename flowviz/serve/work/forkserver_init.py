"""Imported by multiprocessing's forkserver alone (``ProcessPool``'s preload list), never by the server.

Ctrl-C in a terminal reaches the whole process group: the server, the forkserver and every training process.
The server's shutdown ends its workers after marking their runs, so no run reports a lost worker; a worker
that Ctrl-C ended first would (an ERROR line on every Ctrl-C of ``make run``). The forkserver ignores SIGINT
while it serves and gives its children the disposition it had before that, which this module sets: each
worker starts with SIGINT ignored, before any of its own code runs. A server that dies closes the workers'
pipes, which ends them.
"""

import signal

signal.signal(signal.SIGINT, signal.SIG_IGN)
