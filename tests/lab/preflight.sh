#!/bin/bash
# Lab pre-run script (keadm --pre-run=./preflight.sh, uploaded through copyFrom): checks that the
# node can take an edge install before the fake keadm joins it.
set -eu
echo "preflight: $(uname -n) arch $(uname -m), working dir $PWD"
if ! mkdir -p /var/lib/kubeedge || ! [[ -w /var/lib/kubeedge ]]; then
    echo "preflight: /var/lib/kubeedge is not writable" >&2
    exit 1
fi
echo "preflight: ok"
