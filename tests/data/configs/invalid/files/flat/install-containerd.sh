#!/bin/sh
echo "installing containerd"
