#!/bin/bash
# reset-cleanup.sh: kenornir post-run hook that removes what `keadm reset` leaves on an edge node.
#
# Use as keadm.postRun / nodes[].postRun on a reset run, or ship it through copyFrom and pass keadm
# --post-run=./reset-cleanup.sh. Removes RESET_CONFIG_DIR, everything inside RESET_INSTALL_DIR
# (the dir itself stays), the keadm binary in the staging dir (this script's dir, which stays),
# the edgecore systemd unit (disabled and stopped first; only where systemd runs) and, with
# RESET_CLEANUP_CNI=1, KubeEdge and EdgeMesh CNI configs. Prints every path it removes; running
# it again removes nothing and still succeeds. Every path must be absolute and not /; rm never
# crosses into another mounted file system.
#
# Settings: from the environment, else from kenornir-hooks.env beside this script (KEY=VALUE
# lines, see tasks/README.md); [defaults] in brackets.
#   RESET_CONFIG_DIR     [/etc/kubeedge]                          removed whole
#   RESET_INSTALL_DIR    [/var/lib/kubeedge]                      emptied, kept
#   RESET_EDGECORE_UNIT  [/etc/systemd/system/edgecore.service]   the unit file keadm wrote
#   RESET_CLEANUP_CNI    [0]    1 also removes *kubeedge* and *edgemesh* files in RESET_CNI_DIR
#   RESET_CNI_DIR        [/etc/cni/net.d]
#
# Exit codes: 0 nothing is left, 1 a removal failed, 2 a setting is invalid.
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

load_settings RESET_
: "${RESET_CONFIG_DIR:=/etc/kubeedge}" "${RESET_INSTALL_DIR:=/var/lib/kubeedge}"
: "${RESET_EDGECORE_UNIT:=/etc/systemd/system/edgecore.service}"
: "${RESET_CLEANUP_CNI:=0}" "${RESET_CNI_DIR:=/etc/cni/net.d}"
staged_keadm="$hook_dir/keadm"

# Absolute, not /, no empty, . or .. components: a typo in a setting can never widen a removal.
safe_path() {
    [[ $1 =~ ^(/[^/]+)+$ ]] && ! [[ $1 =~ /\.\.?(/|$) ]]
}

for setting in RESET_CONFIG_DIR RESET_INSTALL_DIR RESET_EDGECORE_UNIT RESET_CNI_DIR; do
    if ! safe_path "${!setting%/}"; then
        echo "$hook_name: $setting must be an absolute path other than /, not '${!setting}'" >&2
        exit 2
    fi
    printf -v "$setting" '%s' "${!setting%/}"
done
case $RESET_CLEANUP_CNI in 0 | 1) ;; *)
    echo "$hook_name: RESET_CLEANUP_CNI must be 0 or 1, not '$RESET_CLEANUP_CNI'" >&2
    exit 2
    ;;
esac

removed=0
failed=()
remove() {
    local path=$1
    if ! safe_path "$path"; then
        failed+=("$path (refused: not a safe absolute path)")
        return
    fi
    [ -e "$path" ] || [ -L "$path" ] || return 0
    if rm -rf --one-file-system -- "$path"; then
        echo "reset-cleanup: removed $path"
        removed=$((removed + 1))
    else
        failed+=("$path")
    fi
}

# systemctl is installed on many nodes (and containers) that do not run systemd; this is
# systemd's own test for "booted with systemd" (sd_booted).
systemd_running() {
    command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]
}

if [ -e "$RESET_EDGECORE_UNIT" ]; then
    if systemd_running; then
        # keadm reset normally stops edgecore itself; this only catches a unit it left running.
        systemctl disable --now edgecore >/dev/null 2>&1 ||
            echo "reset-cleanup: systemctl disable --now edgecore failed (already gone?)"
        remove "$RESET_EDGECORE_UNIT"
        systemctl daemon-reload || failed+=("systemctl daemon-reload")
    else
        echo "reset-cleanup: kept $RESET_EDGECORE_UNIT: systemd is not running to disable it"
    fi
fi

remove "$RESET_CONFIG_DIR"
shopt -s nullglob dotglob
for entry in "$RESET_INSTALL_DIR"/*; do
    remove "$entry"
done
remove "$staged_keadm"
if [ "$RESET_CLEANUP_CNI" = 1 ]; then
    for entry in "$RESET_CNI_DIR"/*kubeedge* "$RESET_CNI_DIR"/*edgemesh*; do
        remove "$entry"
    done
fi

if ((${#failed[@]} > 0)); then
    {
        echo "reset-cleanup: could not remove ${#failed[@]} path(s):"
        printf '  - %s\n' "${failed[@]}"
    } >&2
    exit 1
fi
if ((removed == 0)); then
    echo "reset-cleanup: nothing left to remove"
else
    echo "reset-cleanup: removed $removed path(s)"
fi
