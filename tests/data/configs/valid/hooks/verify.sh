#!/bin/bash
# postRun hook: edgecore must be active after join
systemctl is-active --quiet edgecore
