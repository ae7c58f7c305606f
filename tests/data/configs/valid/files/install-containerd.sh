#!/bin/sh
# containerd setup, uploaded with copyFrom and run by keadm --pre-run
echo "installing containerd"
