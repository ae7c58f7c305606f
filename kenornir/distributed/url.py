"""The broker URL as given on the command line: `${NAME}` read from the environment (a password
kept out of the process list), and shown with its password masked. No Celery import here: the CLI
checks the URL before it loads Celery."""

from __future__ import annotations

import re
from collections.abc import Mapping
from urllib.parse import urlsplit

from kenornir.template import masked_url

# Where `kenornir worker` reads its broker URL from when --broker is not given.
BROKER_ENV = "KENORNIR_BROKER"
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class BrokerError(Exception):
    """The broker cannot be used; the message is one line, its URL's password masked."""


def resolved_url(text: str, env: Mapping[str, str]) -> str:
    """The broker URL with each `${NAME}` replaced from env (a password kept out of argv).

    Raises:
        BrokerError: a name is not set, or the URL is not redis:// or rediss://.
    """
    unset = sorted({name for name in _ENV_REFERENCE.findall(text) if name not in env})
    if unset:
        raise BrokerError(f"--broker: environment variable {unset[0]} is not set (export it)")
    url = _ENV_REFERENCE.sub(lambda match: env[match.group(1)], text)
    if urlsplit(url).scheme not in ("redis", "rediss"):
        raise BrokerError(
            f"--broker {masked_url(url)}: not a Redis URL (write redis://HOST:PORT/DB, or "
            "rediss:// for TLS)"
        )
    return url
