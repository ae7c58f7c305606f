#!/bin/bash
# Lab node CPU arch personality, bind-mounted over /usr/bin/uname inside a node by tests/lab:
# answers the machine (-m, and -p/-i, which Debian leaves "unknown") with @MACHINE@ and asks the
# real uname, copied to @REAL_UNAME@, for every other field, in uname's own field order.
machine="@MACHINE@"
real="@REAL_UNAME@"
declare -A wanted=()
for arg in "$@"; do
    case "$arg" in
        --all) arg=-a ;;
        --kernel-name) arg=-s ;;
        --nodename) arg=-n ;;
        --kernel-release) arg=-r ;;
        --kernel-version) arg=-v ;;
        --machine) arg=-m ;;
        --processor) arg=-p ;;
        --hardware-platform) arg=-i ;;
        --operating-system) arg=-o ;;
        -?*) ;;
        *) exec "$real" "$@" ;;
    esac
    for ((i = 1; i < ${#arg}; i++)); do
        letter="${arg:i:1}"
        case "$letter" in
            # Like coreutils on Linux, -a leaves out -p and -i when they are not known.
            a) for field in s n r v m o; do wanted[$field]=1; done ;;
            s | n | r | v | m | p | i | o) wanted[$letter]=1 ;;
            *) exec "$real" "$@" ;; # --help, --version and anything unknown
        esac
    done
done
((${#wanted[@]})) || wanted[s]=1
fields=()
kernel_letters=""
for letter in s n r v; do
    [[ -n "${wanted[$letter]:-}" ]] && kernel_letters+="$letter"
done
[[ -n "$kernel_letters" ]] && fields+=("$("$real" "-$kernel_letters")")
for letter in m p i; do
    [[ -n "${wanted[$letter]:-}" ]] && fields+=("$machine")
done
[[ -n "${wanted[o]:-}" ]] && fields+=("$("$real" -o)")
echo "${fields[*]}"
