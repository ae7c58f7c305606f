#!/bin/bash
# preRun hook: fail early when the node cannot run edgecore
command -v systemctl >/dev/null
