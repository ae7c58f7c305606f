"""Push a CA certificate as root, then join the nodes that have it.

    python examples/push_ca_then_join.py batch.yaml ca.crt [site=north]

Composes kenornir's tasks with Nornir: sftp_upload(as_root=True) puts the certificate where only
root may write (through sudo on nodes that log in as another user), a filter keeps the nodes
that got it (and carry the label, when given), join_node joins them, print_result shows it all.
"""

import sys

from nornir.core.filter import F
from nornir_utils.plugins.functions import print_result

import kenornir
from kenornir.batch import RunOptions, prepare
from kenornir.config import load_config
from kenornir.tasks import join_node, sftp_upload

CA_PATH = "/etc/kubeedge/ca/rootCA.crt"


def main(config_path: str, ca_file: str, label: str = "") -> int:
    batch = load_config(config_path)
    nr = kenornir.init_nornir(batch)
    if label:
        key, _, value = label.partition("=")
        nr = nr.filter(F(**{f"labels__{key}": value}))
    pushed = nr.run(task=sftp_upload, local=ca_file, remote=CA_PATH, as_root=True)
    have_ca = nr.filter(filter_func=lambda host: host.name not in pushed.failed_hosts)
    joined = have_ca.run(task=join_node, packages=prepare(batch, RunOptions()))
    print_result(pushed)
    print_result(joined)
    return 1 if pushed.failed or joined.failed else 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:4]))
