"""An exec-stream upload of keadm cut off half-way resumes on the retry from the bytes the node
holds: the packed frame's part file stays, the bytes are counted by the lab's link relay (not by
kenornir), and the final checksum decides."""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

import pytest

from kenornir.batch import RunOptions, Selection, prepare, run_batch
from kenornir.config import STAGING_DIR, load_config
from tests.batch_configs import node_entry, offline_dir_of, write_config
from tests.lab import Lab, LabFactory, ensure_packages
from tests.lab.relay import EdgeLink

pytestmark = [pytest.mark.lab, pytest.mark.timeout(180)]

BINARY_SIZE = 64 * 2**20  # a frame of about 21 MiB: two seconds on the link below
LINK = EdgeLink(rate_mbit=80.0, rtt_ms=0.0)


def cut_at_half(lab: Lab, name: str, frame_size: int, cut: dict[str, int]) -> threading.Thread:
    """In the background: once the node's frame part holds half the frame, kill the node's SSH
    sessions (its sshd keeps listening) and note how many bytes the link had carried then."""

    def cut_sessions() -> None:
        cut["link_bytes"] = lab.link_counters()[name].to_node
        cut["sessions"] = lab.cut_sessions(name)

    part = f"{STAGING_DIR}/keadm.*.zst.kenornir-part"
    return lab.when_file_grows(name, part, frame_size // 2, cut_sessions)


def test_a_cut_stream_upload_resumes_on_the_retry_and_sends_less_than_60_percent(
    make_lab: LabFactory, tmp_path: Path
) -> None:
    lab = make_lab(nodes=1, edge_link=LINK)
    node = lab.client_nodes[0]
    packages = ensure_packages(tmp_path / "packages", arches=("amd64",), binary_size=BINARY_SIZE)
    entry: dict[str, Any] = node_entry(lab, node.name, cmd="join --token={{.token}}")
    entry["ssh"]["port"] = node.port  # the relay's
    config = write_config(
        tmp_path / "batch.yaml", [entry], offline_dir_of(packages), arch_group=("amd64",)
    )
    options = RunOptions(
        known_hosts=tmp_path / "known_hosts",
        cache_dir=tmp_path / "cache",
        run_dir=tmp_path / "run",
        transfer="stream",
        retry_delay=0.2,
    )
    package = prepare(load_config(config), options)["amd64"]
    frame_size = package.binary_zstd.stat().st_size
    cut: dict[str, int] = {}
    watcher = cut_at_half(lab, node.name, frame_size, cut)
    try:
        run = run_batch(config, Selection(), options, stream=None)
    finally:
        watcher.join()
    resent = lab.link_counters()[node.name].to_node - cut["link_bytes"]

    record = run.report["nodes"][0]
    assert (record["status"], record["attempts"]) == ("ok", 2), record
    assert cut["sessions"] > 0
    log = (run.run_dir / f"{node.name}.log").read_text()
    assert "attempt 1 failed at stage upload (SSH connection lost while uploading" in log, log
    resumed_at = int(log.split("resumed at ")[1].split()[0])
    assert f"resumed at {resumed_at} of {frame_size} bytes: {STAGING_DIR}/keadm" in log
    assert frame_size * 0.4 < resumed_at < frame_size
    print(f"frame {frame_size} bytes; resumed at {resumed_at}; resent {resent} on the link")
    assert resent < 0.6 * frame_size
    on_node = lab.exec(node.name, f"sha256sum {STAGING_DIR}/keadm; ls -a {STAGING_DIR}").stdout
    assert on_node.split()[0] == package.binary_sha256
    assert hashlib.sha256(package.binary.read_bytes()).hexdigest() == package.binary_sha256
    assert "kenornir-part" not in on_node
