#!/bin/sh
echo preflight
