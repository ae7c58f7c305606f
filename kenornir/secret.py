"""Secret: a credential that shows as stars wherever Nornir's inventory is printed or dumped.

Nornir keeps a host's password in `Host.password` and its connection extras in plain dicts, and
`nr.inventory.dict()` (and every repr of a host) hands them out as they are. A Secret is a str
whose text is the mask, so `json.dumps(nr.inventory.dict())`, print_result and any log show
"********"; the value itself is reached only through `reveal`, by the code that must send it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

MASK = "********"


class Secret(str):
    """A str that reads as MASK; `reveal(secret)` is the credential."""

    _value: str

    def __new__(cls, value: str, shown: str = MASK) -> Secret:
        """shown: the text anyone sees (a command with its token masked, say); MASK by default."""
        secret = super().__new__(cls, shown)
        secret._value = value
        return secret

    def __reduce__(self) -> Any:
        # A pickled Secret would carry its value to wherever the bytes go (a broker, a file);
        # a copy holding only the mask would send "********" as the password. Neither.
        raise TypeError("a Secret is not pickled or copied: pass it on as it is")


def reveal(value: str | None) -> str | None:
    """The credential behind a Secret; any other str (a plain Nornir inventory's) as it is."""
    return value._value if isinstance(value, Secret) else value


def host_secrets(data: Mapping[str, Any]) -> list[str]:
    """The values to mask in a host's output and logs: its `secrets` in host.data (Secrets from
    KeadmBatchInventory, or plain strings a composer puts there)."""
    return [value for secret in data.get("secrets", ()) if (value := reveal(secret))]
