"""An SFTP upload cut off half-way resumes: examples/resume_upload.py against a lab node whose
sshd session is killed mid-upload, the bytes counted by the lab's link relay, not by kenornir."""

from __future__ import annotations

import hashlib
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.lab import Lab, LabFactory
from tests.lab.relay import EdgeLink

pytestmark = pytest.mark.lab

EXAMPLES = Path(__file__).parent.parent / "examples"
SIZE = 80 * 2**20
# Fast enough to keep the test short, slow enough that the cut lands near the middle.
LINK = EdgeLink(rate_mbit=320.0, rtt_ms=0.0)
REMOTE = "/tmp/big.bin"


def part_size(lab: Lab, name: str) -> int:
    """Bytes of the upload's part file on the node (notes.part_path: named by content)."""
    answer = lab.exec(name, f"stat -c %s {REMOTE}.*.kenornir-part 2>/dev/null || echo 0")
    return int(answer.stdout.split()[0] if answer.stdout.split() else 0)


def test_a_cut_upload_resumes_and_sends_less_than_60_percent_again(
    make_lab: LabFactory, tmp_path: Path
) -> None:
    lab = make_lab(nodes=1, edge_link=LINK)
    node = lab.client_nodes[0]
    extras = {"key_file": str(lab.key_path), "known_hosts": str(tmp_path / "known_hosts")}
    hosts = {
        node.name: {
            "hostname": node.address,
            "port": node.port,
            "username": "root",
            "connection_options": {"kenornir_ssh": {"extras": extras}},
        }
    }
    (tmp_path / "hosts.yaml").write_text(yaml.safe_dump(hosts))
    big = tmp_path / "big.bin"
    with big.open("wb") as out:
        for _ in range(SIZE // 2**20):
            out.write(hashlib.sha512(out.tell().to_bytes(8)).digest() * 16384)
    upload = subprocess.Popen(
        [sys.executable, EXAMPLES / "resume_upload.py", tmp_path / "hosts.yaml", big, REMOTE],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while part_size(lab, node.name) < SIZE // 2 and time.monotonic() < deadline:
            assert upload.poll() is None, upload.communicate()
            time.sleep(0.05)
        sent_before_cut = lab.link_counters()[node.name].to_node
        assert lab.cut_sessions(node.name) > 0
        output, errors = upload.communicate(timeout=120)
    finally:
        if upload.poll() is None:
            upload.kill()
            upload.wait()
    resent = lab.link_counters()[node.name].to_node - sent_before_cut
    assert upload.returncode == 0, errors
    first, second = output.splitlines()
    assert first.startswith(f"{node.name}: try 1: SSH connection lost while uploading {REMOTE}")
    resumed_at = int(second.split("resumed at ")[1].split(":")[0])
    assert SIZE * 0.4 < resumed_at < SIZE
    assert second.startswith(f"{node.name}: try 2: sent {SIZE - resumed_at} of {SIZE} bytes")
    print(f"cut at {sent_before_cut} bytes on the link; resumed at {resumed_at}; resent {resent}")
    assert resent < 0.6 * SIZE
    on_node = lab.exec(node.name, f"sha256sum {REMOTE}; ls -a /tmp").stdout
    assert on_node.split()[0] == hashlib.sha256(big.read_bytes()).hexdigest()
    assert "kenornir-part" not in on_node
