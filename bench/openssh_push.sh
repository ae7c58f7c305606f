#!/bin/bash
# The OpenSSH contender for one node, as a shell user writes it; `xargs -P W -L 1` runs it once
# per line of the hosts file. Arguments: NAME ADDRESS PORT KEADM_BINARY.
# Environment: KEY (the private key), COPY_FROM (dir), STAGING (node dir), TOKEN, CLOUDCORE.
set -euo pipefail
name=$1 address=$2 port=$3 binary=$4
options=(-i "$KEY" -o BatchMode=yes -o StrictHostKeyChecking=no
    -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR)
ssh "${options[@]}" -p "$port" "root@$address" "mkdir -p $STAGING"
scp -q "${options[@]}" -P "$port" "$binary" "$COPY_FROM"/* "root@$address:$STAGING/"
ssh "${options[@]}" -p "$port" "root@$address" "chmod 0755 $STAGING/* && cd $STAGING &&
    ./keadm join --cloudcore-ipport=$CLOUDCORE --edgenode-name=$name --token=$TOKEN"
