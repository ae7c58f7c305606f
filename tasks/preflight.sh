#!/bin/bash
# preflight.sh: kenornir pre-run hook that checks an edge node can take a keadm install.
#
# Use as keadm.preRun / nodes[].preRun, or ship it through copyFrom and pass keadm
# --pre-run=./preflight.sh. Every check runs and prints one line; when any fails, all the
# failures are listed together on stderr and the script exits 1, so keadm never starts.
#
# Settings: from the environment, else from kenornir-hooks.env beside this script (KEY=VALUE
# lines, see tasks/README.md); [defaults] in brackets.
#   PREFLIGHT_MIN_STAGING_MB   [200]   MiB that must be free in the staging dir (this script's dir)
#   PREFLIGHT_MIN_INSTALL_MB   [500]   MiB that must be free for PREFLIGHT_INSTALL_DIR
#   PREFLIGHT_INSTALL_DIR      [/var/lib/kubeedge]  measured at its nearest existing parent
#   PREFLIGHT_RUNTIME_SOCKET   []      the container runtime socket that must exist; unset: any of
#                                      the containerd, CRI-O, docker and cri-dockerd defaults
#   PREFLIGHT_SKIP_RUNTIME     [0]     1 skips the runtime socket check
#   PREFLIGHT_CLOUDCORE        []      cloudcore HOST:PORT (e.g. 10.0.0.1:10000, [fd00::1]:10000),
#                                      checked with a TCP connect; unset: the check is skipped
#   PREFLIGHT_CONNECT_TIMEOUT  [5]     seconds that connect may take
#   PREFLIGHT_REFERENCE_TIME   []      epoch seconds to compare the clock with (write it into the
#                                      env file on the controller: date +%s); unset: no skew check
#   PREFLIGHT_MAX_CLOCK_SKEW   [300]   seconds the clock may differ from the reference
# The clock check also fails when the year is before 2020 (a node that booted without an RTC).
#
# Exit codes: 0 every check passed or was skipped, 1 a check failed, 2 a setting is invalid.
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

load_settings PREFLIGHT_
: "${PREFLIGHT_MIN_STAGING_MB:=200}" "${PREFLIGHT_MIN_INSTALL_MB:=500}"
: "${PREFLIGHT_INSTALL_DIR:=/var/lib/kubeedge}" "${PREFLIGHT_RUNTIME_SOCKET:=}"
: "${PREFLIGHT_SKIP_RUNTIME:=0}" "${PREFLIGHT_CLOUDCORE:=}" "${PREFLIGHT_CONNECT_TIMEOUT:=5}"
: "${PREFLIGHT_REFERENCE_TIME:=}" "${PREFLIGHT_MAX_CLOCK_SKEW:=300}"
require_whole_number PREFLIGHT_MIN_STAGING_MB PREFLIGHT_MIN_INSTALL_MB \
    PREFLIGHT_CONNECT_TIMEOUT PREFLIGHT_MAX_CLOCK_SKEW
[ -z "$PREFLIGHT_REFERENCE_TIME" ] || require_whole_number PREFLIGHT_REFERENCE_TIME
case $PREFLIGHT_SKIP_RUNTIME in 0 | 1) ;; *)
    echo "$hook_name: PREFLIGHT_SKIP_RUNTIME must be 0 or 1, not '$PREFLIGHT_SKIP_RUNTIME'" >&2
    exit 2
    ;;
esac
if [ -n "$PREFLIGHT_CLOUDCORE" ]; then
    cloudcore_host=${PREFLIGHT_CLOUDCORE%:*}
    cloudcore_host=${cloudcore_host#[}
    cloudcore_host=${cloudcore_host%]}
    cloudcore_port=${PREFLIGHT_CLOUDCORE##*:}
    if [ -z "$cloudcore_host" ] || [ "$cloudcore_host" = "$PREFLIGHT_CLOUDCORE" ] ||
        ! [[ $cloudcore_port =~ ^[0-9]+$ ]] || ((cloudcore_port < 1 || cloudcore_port > 65535))
    then
        echo "$hook_name: PREFLIGHT_CLOUDCORE must be HOST:PORT, not '$PREFLIGHT_CLOUDCORE'" >&2
        exit 2
    fi
fi

failures=()
checks=0
report() {
    local outcome=$1 check=$2 detail=$3
    checks=$((checks + 1))
    printf 'preflight: %-4s %-12s %s\n' "$outcome" "$check" "$detail"
    [ "$outcome" != FAIL ] || failures+=("$check: $detail")
}

check_root() {
    local uid
    uid=$(id -u)
    if [ "$uid" = 0 ]; then
        report ok root "running as root"
    else
        report FAIL root \
            "running as uid $uid ($(id -un)), keadm needs root: log in as root or set ssh.sudo"
    fi
}

check_arch() {
    local machine
    machine=$(uname -m)
    case $machine in
        x86_64 | amd64) report ok arch "$machine (keadm amd64)" ;;
        aarch64 | arm64) report ok arch "$machine (keadm arm64)" ;;
        armv7l | armv6l | arm) report ok arch "$machine (keadm arm)" ;;
        *) report FAIL arch "$machine: keadm ships only for x86_64, aarch64, armv7l/armv6l" ;;
    esac
}

# Free MiB of the file system holding $1, from POSIX df output (column 4 is KiB available).
free_mib() {
    local available
    available=$(df -Pk -- "$1" 2>/dev/null | {
        read -r _
        read -r _ _ _ available _ && echo "$available"
    }) || return 1
    [[ $available =~ ^[0-9]+$ ]] || return 1
    echo $((available / 1024))
}

check_free_space() {
    local check=$1 dir=$2 need_mib=$3 free
    # The install dir does not exist before the first install: measure where it will be made.
    while [ ! -d "$dir" ] && [ "$dir" != / ]; do
        dir=$(dirname -- "$dir")
    done
    if ! free=$(free_mib "$dir"); then
        report FAIL "$check" "cannot measure free space in $dir (df -Pk failed)"
    elif ((free < need_mib)); then
        report FAIL "$check" "only $free MiB free in $dir, need $need_mib MiB"
    else
        report ok "$check" "$free MiB free in $dir (need $need_mib)"
    fi
}

check_runtime_socket() {
    local candidates socket
    if [ "$PREFLIGHT_SKIP_RUNTIME" = 1 ]; then
        report skip runtime "PREFLIGHT_SKIP_RUNTIME=1"
        return
    fi
    if [ -n "$PREFLIGHT_RUNTIME_SOCKET" ]; then
        candidates=("$PREFLIGHT_RUNTIME_SOCKET")
    else
        candidates=(/run/containerd/containerd.sock /var/run/containerd/containerd.sock
            /run/crio/crio.sock /var/run/docker.sock
            /run/cri-dockerd.sock /var/run/cri-dockerd.sock)
    fi
    for socket in "${candidates[@]}"; do
        if [ -S "$socket" ]; then
            report ok runtime "container runtime socket $socket"
            return
        fi
    done
    report FAIL runtime "no container runtime socket: none of ${candidates[*]}"
}

check_cloudcore() {
    local error status
    if [ -z "$PREFLIGHT_CLOUDCORE" ]; then
        report skip cloudcore "PREFLIGHT_CLOUDCORE not set"
        return
    fi
    # bash's own /dev/tcp: no nc or curl needed on the node.
    # shellcheck disable=SC2016  # $0 and $1 are expanded by the inner bash
    error=$(timeout "$PREFLIGHT_CONNECT_TIMEOUT" "$BASH" -c 'exec 3<>"/dev/tcp/$0/$1"' \
        "$cloudcore_host" "$cloudcore_port" 2>&1)
    status=$?
    if [ "$status" = 0 ]; then
        report ok cloudcore "$PREFLIGHT_CLOUDCORE accepts connections"
    elif [ "$status" = 124 ]; then
        report FAIL cloudcore "$PREFLIGHT_CLOUDCORE: no answer within ${PREFLIGHT_CONNECT_TIMEOUT}s"
    else
        error=${error##*$'\n'}
        report FAIL cloudcore "$PREFLIGHT_CLOUDCORE: ${error##*: }"
    fi
}

check_clock() {
    local now year skew direction
    read -r now year < <(date -u '+%s %Y')
    if ((year < 2020)); then
        report FAIL clock "the clock says it is $year: set the time (no RTC or NTP?)"
    elif [ -z "$PREFLIGHT_REFERENCE_TIME" ]; then
        report ok clock "year $year; skew not checked (PREFLIGHT_REFERENCE_TIME not set)"
    else
        skew=$((now - PREFLIGHT_REFERENCE_TIME))
        direction="${skew#-}s ahead of"
        ((skew >= 0)) || direction="${skew#-}s behind"
        if ((${skew#-} > PREFLIGHT_MAX_CLOCK_SKEW)); then
            report FAIL clock "$direction the reference time, over ${PREFLIGHT_MAX_CLOCK_SKEW}s"
        else
            report ok clock "$direction the reference time (at most ${PREFLIGHT_MAX_CLOCK_SKEW}s)"
        fi
    fi
}

check_root
check_arch
check_free_space staging-disk "$hook_dir" "$PREFLIGHT_MIN_STAGING_MB"
check_free_space install-disk "$PREFLIGHT_INSTALL_DIR" "$PREFLIGHT_MIN_INSTALL_MB"
check_runtime_socket
check_cloudcore
check_clock

if ((${#failures[@]} > 0)); then
    {
        echo "preflight: $(uname -n) is not ready for keadm," \
            "${#failures[@]} of $checks checks failed:"
        printf '  - %s\n' "${failures[@]}"
    } >&2
    exit 1
fi
echo "preflight: $(uname -n) passed all $checks checks"
