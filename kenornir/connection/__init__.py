"""kenornir's SSH: the login (login.py), one remote command (remote.py, output.py) and the thin
Nornir connection plugin `kenornir_ssh` over them (plugin.py)."""

from kenornir.connection.login import ConnectError, Login, classify_connect_error, load_private_key
from kenornir.connection.output import OUTPUT_TAIL_BYTES, CommandResult, LineCallback, StreamName
from kenornir.connection.plugin import (
    CONNECTION_NAME,
    EXTRAS_KEYS,
    KenornirSSH,
    SSHSettings,
    node_ssh,
    run_options,
)
from kenornir.connection.remote import ByteSource, CommandInterrupted

__all__ = [
    "CONNECTION_NAME",
    "EXTRAS_KEYS",
    "OUTPUT_TAIL_BYTES",
    "ByteSource",
    "CommandInterrupted",
    "CommandResult",
    "ConnectError",
    "KenornirSSH",
    "LineCallback",
    "Login",
    "SSHSettings",
    "StreamName",
    "classify_connect_error",
    "load_private_key",
    "node_ssh",
    "run_options",
]
