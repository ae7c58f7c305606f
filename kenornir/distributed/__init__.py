"""One batch across per-site workers: the controller sends each node as a Celery task over a
Redis broker, and `kenornir worker` processes run kenornir's own join_node on them.

broker.py holds the Celery app both sides share; job.py what travels (a node's part of the
config with `${NAME}` unresolved, the verified package digests, the run's options); worker.py
the worker; controller.py the controller's side of a run.
"""
