"""Shared fixtures: the session lab, its packages, and small labs of their own for fault tests."""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.lab import DEFAULT_TMP_SIZE_MB, Lab, LabFactory, ensure_packages, leased_subnet
from tests.lab.host import lab_unavailable_reason
from tests.lab.relay import EdgeLink

SESSION_LAB_NODES = 12
# Small packages keep the suite fast; the lab CLI's default is 80 MiB like the real binary.
LAB_PACKAGE_SIZE = 4 * 2**20


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "lab: needs the local edge lab (root, unshare, nsenter, OpenSSH sshd)"
    )


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("lab") is not None:
        require_lab_host()


def require_lab_host() -> None:
    """Skip when this machine cannot host a lab, but fail under CI=true: CI must run them."""
    reason = lab_unavailable_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the lab cannot run here: {reason}", pytrace=False)
    pytest.skip(f"this machine cannot host the lab: {reason}")


@pytest.fixture(scope="session")
def lab_packages(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Fake keadm packages (4 MiB binaries) in the offlinePackageDir layout, by arch."""
    return ensure_packages(tmp_path_factory.mktemp("lab-packages"), binary_size=LAB_PACKAGE_SIZE)


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory, lab_packages: dict[str, Path]) -> Iterator[Lab]:
    """12 nodes with mixed arches on a leased subnet of their own, and their batch config
    (`lab.inventory_path`); stopped at the end of the session whatever happened."""
    require_lab_host()
    state_dir = tmp_path_factory.mktemp("lab")
    offline_package_dir = next(iter(lab_packages.values())).parent.parent
    with leased_subnet() as subnet:
        session_lab = Lab(state_dir, subnet)
        try:
            session_lab.up(SESSION_LAB_NODES, arch_mix=True)
            session_lab.write_inventory(state_dir / "lab.yaml", offline_package_dir)
            yield session_lab
        finally:
            session_lab.down()


@pytest.fixture
def make_lab(tmp_path: Path) -> Iterator[LabFactory]:
    """Start small labs of their own (own state dir and leased subnet), stopped after the test."""
    require_lab_host()
    with ExitStack() as cleanup:

        def make(
            nodes: int = 1,
            arch_mix: bool = False,
            tmp_size_mb: int = DEFAULT_TMP_SIZE_MB,
            *,
            busybox_nodes: int = 0,
            sites: Mapping[str, int] | None = None,
            edge_link: EdgeLink | None = None,
        ) -> Lab:
            subnet = cleanup.enter_context(leased_subnet())
            small_lab = Lab(tmp_path / f"lab-{subnet}", subnet)
            cleanup.callback(small_lab.down)
            small_lab.up(
                nodes,
                arch_mix=arch_mix,
                tmp_size_mb=tmp_size_mb,
                busybox_nodes=busybox_nodes,
                sites=sites,
                edge_link=edge_link,
            )
            return small_lab

        yield make


@pytest.fixture(autouse=True)
def _session_lab_unjoined(request: pytest.FixtureRequest) -> None:
    """Tests that share the session lab start from nodes that are not joined: the fake keadm,
    like the real one, refuses to join a node again, and kenornir skips a joined node. The join
    records stay (tests compare counts before and after)."""
    if "lab" in request.fixturenames:
        request.getfixturevalue("lab").forget_joins()
