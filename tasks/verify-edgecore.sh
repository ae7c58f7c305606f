#!/bin/bash
# verify-edgecore.sh: kenornir post-run hook that waits for edgecore to be up after keadm join.
#
# Use as keadm.postRun / nodes[].postRun, or ship it through copyFrom and pass keadm
# --post-run=./verify-edgecore.sh. edgecore counts as up when its systemd unit is active (on a
# node running systemd that has the edgecore unit), else when a process named edgecore runs.
# On timeout it prints the last lines of edgecore's journal (or of its log file) and exits 1.
#
# Settings: from the environment, else from kenornir-hooks.env beside this script (KEY=VALUE
# lines, see tasks/README.md); [defaults] in brackets.
#   VERIFY_TIMEOUT    [60]   seconds to wait for edgecore
#   VERIFY_INTERVAL   [2]    seconds between checks (a progress line each time)
#   VERIFY_LOG_LINES  [30]   how many journal or log lines to show on timeout
#   VERIFY_LOG_FILE   [/var/log/kubeedge/edgecore.log]  shown on timeout when there is no journal
#                            (where keadm points edgecore's output when it runs it without systemd)
#
# Exit codes: 0 edgecore is up, 1 it was not up within VERIFY_TIMEOUT, 2 a setting is invalid.
set -u -o pipefail

# --- settings loader: identical in every kenornir hook, so each script works on its own ---
# The file is parsed, never sourced (it cannot run code as root), and the environment wins
# over it. kenornir passes no environment, so operators ship the file through copyFrom.
hook_name=$(basename -- "${BASH_SOURCE[0]}")
hook_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)
load_settings() {
    local prefix=$1 file="$hook_dir/kenornir-hooks.env" line name value number=0
    [ -f "$file" ] || return 0
    while IFS= read -r line || [ -n "$line" ]; do
        number=$((number + 1))
        line=${line%$'\r'}
        line=${line#"${line%%[![:space:]]*}"}
        case $line in '' | '#'*) continue ;; esac
        line=${line#export }
        name=${line%%=*}
        if [ "$name" = "$line" ] || ! [[ $name =~ ^[A-Za-z_][A-Za-z0-9_]*$ ]]; then
            echo "$hook_name: ignoring line $number of $file: not KEY=VALUE" >&2
            continue
        fi
        [[ $name == "$prefix"* ]] || continue
        value=${line#*=}
        case $value in \"*\" | \'*\') value=${value:1:-1} ;; esac
        [ -n "${!name+set}" ] || printf -v "$name" '%s' "$value"
    done <"$file"
}
# --- end of settings loader ---

require_whole_number() {
    local name
    for name; do
        [[ ${!name} =~ ^[0-9]+$ ]] && continue
        echo "$hook_name: $name must be a whole number, not '${!name}'" >&2
        exit 2
    done
}

load_settings VERIFY_
: "${VERIFY_TIMEOUT:=60}" "${VERIFY_INTERVAL:=2}" "${VERIFY_LOG_LINES:=30}"
: "${VERIFY_LOG_FILE:=/var/log/kubeedge/edgecore.log}"
require_whole_number VERIFY_TIMEOUT VERIFY_INTERVAL VERIFY_LOG_LINES
if ((VERIFY_INTERVAL < 1)); then
    echo "$hook_name: VERIFY_INTERVAL must be at least 1" >&2
    exit 2
fi

# systemctl is installed on many nodes (and containers) that do not run systemd; this is
# systemd's own test for "booted with systemd" (sd_booted).
systemd_running() {
    command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]
}

# What `pgrep -x edgecore` does, without needing procps on the node, and skipping zombies:
# an edgecore that just died is not up. /proc/PID/stat is "PID (NAME) STATE ...".
edgecore_process_running() {
    local stat line state
    for stat in /proc/[0-9]*/stat; do
        read -r line 2>/dev/null <"$stat" || continue
        state=${line##*) }
        [[ $line == *" (edgecore) "* && ${state:0:1} != Z ]] && return 0
    done
    return 1
}

if systemd_running && systemctl cat edgecore.service >/dev/null 2>&1; then
    watched="the edgecore systemd unit"
    edgecore_up() { systemctl is-active --quiet edgecore; }
else
    watched="a process named edgecore"
    edgecore_up() { edgecore_process_running; }
fi

started=$SECONDS
until edgecore_up; do
    waited=$((SECONDS - started))
    if ((waited >= VERIFY_TIMEOUT)); then
        {
            echo "verify-edgecore: timed out: edgecore is not up after ${waited}s" \
                "(watched $watched)"
            if systemd_running && command -v journalctl >/dev/null 2>&1; then
                echo "verify-edgecore: last $VERIFY_LOG_LINES lines of journalctl -u edgecore:"
                journalctl -u edgecore --no-pager -n "$VERIFY_LOG_LINES" 2>&1
            elif [ -f "$VERIFY_LOG_FILE" ]; then
                echo "verify-edgecore: last $VERIFY_LOG_LINES lines of $VERIFY_LOG_FILE:"
                tail -n "$VERIFY_LOG_LINES" -- "$VERIFY_LOG_FILE"
            else
                echo "verify-edgecore: no edgecore journal (systemd is not running)" \
                    "and no $VERIFY_LOG_FILE to show"
            fi
        } >&2
        exit 1
    fi
    echo "verify-edgecore: waiting for $watched: ${waited}s of ${VERIFY_TIMEOUT}s"
    sleep "$VERIFY_INTERVAL"
done
echo "verify-edgecore: edgecore is up ($watched) after $((SECONDS - started))s"
