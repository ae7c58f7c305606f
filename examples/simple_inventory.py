"""kenornir's tasks on a plain Nornir SimpleInventory: no batch config needed.

    python examples/simple_inventory.py hosts.yaml FILE REMOTE_PATH

hosts.yaml is Nornir's own format; kenornir_ssh reads hostname, port, username, password and
its extras (see the README's "Composing tasks in Python"):

    edge-1:
      hostname: 192.0.2.10
      username: edge
      connection_options:
        kenornir_ssh:
          extras:
            key_file: /home/me/.ssh/id_ed25519
            sudo: true
            known_hosts: /home/me/.ssh/known_hosts

Runs `uptime` on every host, then puts FILE at REMOTE_PATH over SFTP (skipped where the host
holds it already), and prints one line per host.
"""

import sys

from nornir import InitNornir

from kenornir.tasks import run_command, sftp_upload


def main(hosts_file: str, local: str, remote: str) -> int:
    nr = InitNornir(
        inventory={"plugin": "SimpleInventory", "options": {"host_file": hosts_file}},
        runner={"plugin": "threaded", "options": {"num_workers": 10}},
        logging={"enabled": False},
    )
    uptime = nr.run(task=run_command, command="uptime")
    pushed = nr.run(task=sftp_upload, local=local, remote=remote)
    for name in sorted(nr.inventory.hosts):
        if uptime[name].failed or pushed[name].failed:
            failure = uptime[name] if uptime[name].failed else pushed[name]
            print(f"{name}: failed: {failure[0].exception}")
            continue
        sent = pushed[name][0].result
        what = f"sent {sent.sent_bytes} bytes" if sent.changed else "already there"
        print(f"{name}: up {uptime[name][0].result.split(' up ')[-1].split(',')[0]}; {what}")
    return 1 if uptime.failed or pushed.failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
