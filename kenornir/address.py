"""How a node's address is written everywhere kenornir shows one: `host:port`."""

DEFAULT_SSH_PORT = 22


def host_port(host: str, port: int | None = None) -> str:
    """`host:port`; an IPv6 address bracketed (`[fd00::1]:22`) so the port reads as the port."""
    shown = f"[{host}]" if ":" in host else host
    return f"{shown}:{port or DEFAULT_SSH_PORT}"
