"""The Celery app both sides share: the broker URL, the queues, and how tasks are delivered.

One Redis serves as broker (the queues) and result backend (each node's progress and outcome).
Delivery is at most once per node: a task is acknowledged late (when it ends) and a worker takes
no more tasks than it has threads, so a worker that dies holds no node that has not started
(those stay queued for the other workers of the queue). The controller revokes what it gives up
on (a lost worker's nodes, a site without workers), and a worker drops a revoked task it meets.
"""

from __future__ import annotations

import ssl
from typing import Any
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from celery import Celery
from celery.backends.redis import RedisBackend

from kenornir.distributed.url import BrokerError
from kenornir.template import masked_url

TASK_NAME = "kenornir.join_node"
DEFAULT_QUEUE = "kenornir"
SITE_QUEUE_PREFIX = "kenornir.site."
# A message taken but not acknowledged goes back to its queue after this long (Redis transport):
# longer than any node's job, so a node is never run twice by a redelivery while it runs.
VISIBILITY_TIMEOUT_S = 12 * 3600
RESULT_EXPIRES_S = 24 * 3600
_CERT_REQS = {"required": ssl.CERT_REQUIRED, "optional": ssl.CERT_OPTIONAL, "none": ssl.CERT_NONE}
_TLS_PARAMETERS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")


def queue_for(site: str | None) -> str:
    """The queue of a node: its site's, or the common one."""
    return f"{SITE_QUEUE_PREFIX}{site}" if site else DEFAULT_QUEUE


def celery_app(url: str) -> Celery:
    """kenornir's Celery app on the broker at url (also its result backend).

    rediss:// takes TLS settings as query parameters, as redis-py names them: ssl_cert_reqs
    (required, the default; optional; none), ssl_ca_certs, ssl_certfile, ssl_keyfile.
    """
    plain, tls = _split_tls(url)
    app = Celery("kenornir", broker=plain, backend=plain, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_default_queue=DEFAULT_QUEUE,
        task_acks_late=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT_S},
        result_expires=RESULT_EXPIRES_S,
        broker_connection_retry_on_startup=True,
        worker_hijack_root_logger=False,
        worker_redirect_stdouts=False,
    )
    if tls is not None:
        app.conf.update(broker_use_ssl=tls, redis_backend_use_ssl=tls)
    return app


def connected_app(url: str) -> Celery:
    """celery_app(url), once its broker has answered (BrokerError otherwise)."""
    app = celery_app(url)
    check_broker(app, url)
    return app


def check_broker(app: Celery, url: str, timeout_s: float = 5.0) -> None:
    """Connect once, so that a broker that is down stops the run before anything starts.

    Raises:
        BrokerError: naming the URL, its password masked.
    """
    try:
        with app.connection_for_write() as connection:
            connection.ensure_connection(max_retries=1, timeout=int(timeout_s))
        redis_backend(app).client.ping()
    except Exception as exc:  # kombu and redis-py raise many kinds; all mean the same here
        reason = " ".join(str(exc).split()) or type(exc).__name__
        raise BrokerError(f"cannot reach the broker at {masked_url(url)}: {reason}") from None


def redis_backend(app: Celery) -> RedisBackend:
    """The app's result backend, which celery_app made a Redis one."""
    backend = app.backend
    assert isinstance(backend, RedisBackend)
    return backend


def _split_tls(url: str) -> tuple[str, dict[str, Any] | None]:
    """The URL without its TLS query parameters, and those as Celery's *_use_ssl settings."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query))
    tls = {key: query.pop(key) for key in _TLS_PARAMETERS if key in query}
    rest = "&".join(f"{key}={value}" for key, value in query.items())
    plain = urlunsplit(parts._replace(query=rest))
    if parts.scheme != "rediss":
        if tls:
            raise BrokerError(f"--broker {masked_url(url)}: TLS parameters need rediss://")
        return plain, None
    reqs = str(tls.get("ssl_cert_reqs", "required")).lower().removeprefix("cert_")
    if reqs not in _CERT_REQS:
        raise BrokerError(
            f"--broker {masked_url(url)}: ssl_cert_reqs={reqs} (write required, optional or none)"
        )
    return plain, {**tls, "ssl_cert_reqs": _CERT_REQS[reqs]}
