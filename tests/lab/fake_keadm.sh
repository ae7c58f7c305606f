#!/bin/bash
# Fake keadm for the kenornir lab: stands in for KubeEdge's keadm on a lab edge node.
#
# Sub-commands:
#   join [FLAGS]        prints join-like log lines, writes $ETC_DIR/config/edgecore.yaml and
#                       appends one record line (format below); like real keadm it refuses
#                       (exit 1) while edgecore.yaml exists: "the management directory is not clean"
#   reset [edge] [FLAGS] asks "[y/N]" on stdin (batch pipes `yes |`) unless --force; with y it
#                       deletes the record and edgecore.yaml, without it aborts with exit 1
#   version             prints a keadm-like version line
# Flags (both --flag=value and --flag value):
#   --pre-run=FILE      `/bin/bash FILE` in the working directory before the command;
#                       its failure aborts the command (exit 1), as real keadm does
#   --post-run=FILE     `/bin/bash FILE` after the command succeeded; its failure is only printed
#   --token=invalid     join fails with a keadm-like certificate error, exit 1
#   --force             reset does not ask
# Fault knobs for tests (not real keadm flags):
#   --fake-sleep=S      join sleeps S seconds (so concurrency can be observed)
#   --fake-hang         join sleeps until killed
#   --fake-stderr-lines=N  join writes N numbered lines to stderr
#   --fake-stderr-mb=N  join writes exactly N MiB (64-byte lines) to stderr
#
# Record: every join invocation appends one line to $KEADM_FAKE_RECORD_DIR/keadm-join.log
# (default dir /var/lib/kubeedge), tab-separated:
#   START <TAB> END <TAB> OUTCOME <TAB> CWD <TAB> ARG1 <TAB> ARG2 ...
# START/END are `date +%s.%N` (before the pre-run, after the post-run); OUTCOME is `ok`,
# `pre-run-failed`, `invalid-token`, `not-clean` (edgecore.yaml existed) or `killed`; ARGs are the full argv after the program name
# (`join` first). Arguments containing tabs or newlines are not supported.
#
# The package builder appends padding after the final `exit` line to reach a real binary's size;
# bash never reads that far, so nothing may follow `exit` below.

set -u

FAKE_VERSION="v1.22.0"
FAKE_ARCH="amd64"
RECORD_DIR="${KEADM_FAKE_RECORD_DIR:-/var/lib/kubeedge}"
RECORD_FILE="$RECORD_DIR/keadm-join.log"
# Where real keadm keeps the edge node's config; its edgecore.yaml marks a joined node.
ETC_DIR="${KEADM_FAKE_ETC_DIR:-/etc/kubeedge}"
EDGECORE_CONFIG="$ETC_DIR/config/edgecore.yaml"

pre_run=""
post_run=""
token=""
fake_sleep=""
fake_hang=0
force=0
stderr_lines=0
stderr_mb=0
nap_pid=""

log() {
    # klog-style line, like keadm prints: I1127 21:09:00.123456   42 join.go:NN] message
    printf 'I%s %7d %s] %s\n' "$(date +'%m%d %H:%M:%S.%6N')" "$$" "$1" "$2"
}

fail() {
    printf 'Error: %s\n' "$1" >&2
    exit 1
}

parse_flags() {
    while (($# > 0)); do
        local flag="$1" value=""
        shift
        case "$flag" in
            --*=*) value="${flag#*=}"; flag="${flag%%=*}" ;;
            --pre-run | --post-run | --token | --fake-sleep | --fake-stderr-lines | --fake-stderr-mb)
                value="${1:-}"; shift || true ;;
        esac
        case "$flag" in
            --pre-run) pre_run="$value" ;;
            --post-run) post_run="$value" ;;
            --token) token="$value" ;;
            --fake-sleep) fake_sleep="$value" ;;
            --fake-hang) fake_hang=1 ;;
            --force) force=1 ;;
            --fake-stderr-lines) stderr_lines="$value" ;;
            --fake-stderr-mb) stderr_mb="$value" ;;
        esac
    done
}

run_pre_run() {
    [[ -n "$pre_run" ]] || return 0
    log "join.go:96" "Executing pre-run script: $pre_run"
    if ! /bin/bash "$pre_run"; then
        printf 'Error: execute pre-run script: %s failed\n' "$pre_run" >&2
        return 1
    fi
}

run_post_run() {
    [[ -n "$post_run" ]] || return 0
    log "join.go:201" "Executing post-run script: $post_run"
    if ! /bin/bash "$post_run"; then
        # Real keadm only reports a failed post-run script; the command itself succeeded.
        log "join.go:204" "Failed to execute post-run script $post_run, but keadm join succeeded"
    fi
}

flood_stderr() {
    if ((stderr_lines > 0)); then
        seq -f 'W0000 fake keadm stderr flood line %.0f' 1 "$stderr_lines" >&2
    fi
    if ((stderr_mb > 0)); then
        yes 'fake keadm stderr flood: 64-byte line padding xxxxxxxxxxxxxxxxx' |
            head -c "$((stderr_mb * 1048576))" >&2
    fi
}

record_join() {
    local outcome="$1"
    mkdir -p "$RECORD_DIR"
    local IFS=$'\t'
    printf '%s\t%s\t%s\t%s\t%s\n' "$join_start" "$(date +%s.%N)" "$outcome" "$PWD" \
        "${join_argv[*]}" >>"$RECORD_FILE"
}

nap() {
    # Backgrounded so a TERM trap runs at once instead of after the sleep; the trap stops it.
    sleep "$1" &
    nap_pid="$!"
    wait "$nap_pid"
    nap_pid=""
}

# shellcheck disable=SC2317 # run by the TERM/INT/HUP trap, not called directly
on_join_killed() {
    # One record however many signals come: a stop signals the whole process group, and
    # coreutils timeout passes the signal on to the group once more.
    trap '' TERM INT HUP
    [[ -n "$nap_pid" ]] && kill "$nap_pid" 2>/dev/null
    record_join killed
    exit 143
}

cmd_join() {
    join_start="$(date +%s.%N)"
    join_argv=(join "$@")
    trap on_join_killed TERM INT HUP
    parse_flags "$@"
    if ! run_pre_run; then
        record_join pre-run-failed
        exit 1
    fi
    log "join.go:110" "1. Check KubeEdge edgecore process status"
    log "join.go:126" "2. Check if the management directory is clean"
    if [[ -e "$EDGECORE_CONFIG" ]]; then
        record_join not-clean
        fail "the management directory is not clean, please remove it first: $EDGECORE_CONFIG exists"
    fi
    if [[ "$token" == "invalid" ]]; then
        record_join invalid-token
        fail "failed to get CA certificate, err: token credentials are in the wrong format"
    fi
    log "join.go:140" "3. Create the necessary directories"
    flood_stderr
    if ((fake_hang)); then
        nap infinity
    fi
    if [[ -n "$fake_sleep" ]]; then
        nap "$fake_sleep"
    fi
    log "join.go:152" "4. Pull Images"
    log "join.go:160" "5. Copy resources from the image to the management directory"
    log "join.go:170" "6. Generate systemd service file"
    log "join.go:178" "7. Generate EdgeCore default configuration"
    mkdir -p "$ETC_DIR/config"
    printf 'apiVersion: edgecore.config.kubeedge.io/v1alpha2\nkind: EdgeCore\n' >"$EDGECORE_CONFIG"
    log "join.go:186" "8. Run EdgeCore daemon"
    log "join.go:195" "KubeEdge edgecore is running, For logs visit: journalctl -u edgecore.service -xe"
    run_post_run
    record_join ok
}

cmd_reset() {
    [[ "${1:-}" == "edge" ]] && shift
    parse_flags "$@"
    run_pre_run || exit 1
    printf "[reset] WARNING: Changes made to this host by 'keadm init' or 'keadm join' will be reverted.\n"
    printf '[reset] Are you sure you want to proceed? [y/N]: '
    local answer=""
    if ((force)); then answer=y; else read -r answer || true; fi
    case "$answer" in
        y | Y | yes | Yes | YES) ;;
        *) printf '\n'; fail "aborted reset operation" ;;
    esac
    rm -f "$RECORD_FILE" "$EDGECORE_CONFIG"
    printf '\n'
    log "reset.go:120" "Edge node reset: $RECORD_FILE and $EDGECORE_CONFIG removed"
    run_post_run
}

cmd_version() {
    printf 'version: version.Info{Major:"1", Minor:"%s", GitVersion:"%s", ' \
        "$(cut -d. -f2 <<<"$FAKE_VERSION")" "$FAKE_VERSION"
    printf 'GitTreeState:"clean", BuildDate:"2025-01-01T00:00:00Z", GoVersion:"go1.22.9", '
    printf 'Compiler:"gc", Platform:"linux/%s"}\n' "$FAKE_ARCH"
}

main() {
    local command="${1:-}"
    shift || true
    case "$command" in
        join) cmd_join "$@" ;;
        reset) cmd_reset "$@" ;;
        version) cmd_version ;;
        "") fail "keadm (fake): a sub-command is required: join, reset or version" ;;
        *) fail "unknown command \"$command\" for \"keadm\"" ;;
    esac
}

main "$@"
exit $?
