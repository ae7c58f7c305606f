"""CPU architectures: keadm's names for them and every other name they go by (`uname -m`)."""

# What keadm ships for (its release tarballs' arch names), the values of keadm.archGroup.
KEADM_ARCHES = ("amd64", "arm64", "arm")

# `uname -m` values (and keadm's own names), mapped as upstream keadm batch maps them.
UNAME_TO_ARCH = {
    "x86_64": "amd64",
    "amd64": "amd64",
    "aarch64": "arm64",
    "arm64": "arm64",
    "armv7l": "arm",
    "armv6l": "arm",
    "arm32": "arm",
    "arm": "arm",
}


def keadm_arch(name: str) -> str | None:
    """keadm's name for an arch known by any of its names, or None."""
    return UNAME_TO_ARCH.get(name)
