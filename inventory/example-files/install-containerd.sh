#!/bin/bash
# Uploaded with copyFrom next to keadm; keadm join runs it through --pre-run=./install-containerd.sh.
set -euo pipefail
if command -v containerd >/dev/null; then
    echo "containerd already installed: $(containerd --version)"
    exit 0
fi
if command -v apt-get >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq containerd
elif command -v dnf >/dev/null; then
    dnf install -y containerd
else
    echo "no apt-get or dnf: install containerd by hand" >&2
    exit 1
fi
systemctl enable --now containerd
