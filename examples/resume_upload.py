"""Upload a big file over a link that drops, and let the next try resume it.

    python examples/resume_upload.py hosts.yaml FILE REMOTE_PATH [TRIES]

sftp_upload writes to a part file beside REMOTE_PATH and moves it into place only once the
sha256 of what arrived, computed on the node, is FILE's. When the connection drops part-way
the part stays, and the next try sends only the bytes it lacks. Each try prints how many bytes
it sent; a resumed one says where it resumed, which is what the resume saved.
"""

import sys

from nornir import InitNornir

from kenornir.tasks import sftp_upload


def main(hosts_file: str, local: str, remote: str, tries: str = "3") -> int:
    nr = InitNornir(
        inventory={"plugin": "SimpleInventory", "options": {"host_file": hosts_file}},
        logging={"enabled": False},
    )
    for attempt in range(1, int(tries) + 1):
        # on_failed: Nornir skips the hosts that failed a previous run unless told otherwise.
        results = nr.run(task=sftp_upload, local=local, remote=remote, on_failed=True)
        for name, result in sorted(results.items()):
            if result.failed:
                print(f"{name}: try {attempt}: {result[0].exception}", flush=True)
                continue
            sent = result[0].result
            line = f"{name}: try {attempt}: sent {sent.sent_bytes} of {sent.size} bytes"
            if sent.resumed_at:
                line += f", resumed at {sent.resumed_at}: the resume saved {sent.resumed_at} bytes"
            print(line, flush=True)
        if not results.failed:
            return 0
        # Try again where it failed, over a new connection.
        failed = set(results.failed_hosts)
        nr = nr.filter(filter_func=lambda host, again=failed: host.name in again)
        for host in nr.inventory.hosts.values():
            host.close_connections()
    return 1


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:5]))
