#!/usr/bin/env bash
# Cargo runner for gradguard's Cortex-M firmware (firmware/.cargo/config.toml): boots the ELF
# on qemu-system-arm with semihosting and exits with the firmware's semihosting exit status
# (0 = all tests passed, 1 = a test or a panic failed, 124 = timeout).
#
#   run-cortex-m.sh [--plugin SO[,ARGS]] ELF [semihosting args...]
#
# Board: $QEMU_MACHINE, else from the ELF's target: thumbv8m.main-* -> mps3-an547
# (Cortex-M55), thumbv6m-* -> mps2-an385 (a Cortex-M3, which runs ARMv6-M code), otherwise
# mps2-an386 (Cortex-M4F); mps2-an500 is the Cortex-M7.
# $QEMU_TIMEOUT seconds (default 120) before the run is killed.
set -euo pipefail

plugin=()
if [ "${1:-}" = "--plugin" ]; then plugin=(-plugin "$2"); shift 2; fi
[ $# -ge 1 ] || { echo "usage: run-cortex-m.sh [--plugin SO[,ARGS]] ELF [args...]" >&2; exit 2; }
elf="$1"; shift
[ -f "$elf" ] || { echo "run-cortex-m.sh: no such ELF: $elf" >&2; exit 2; }
command -v qemu-system-arm >/dev/null ||
  { echo "run-cortex-m.sh: qemu-system-arm missing; run tools/setup.sh cortex-m" >&2; exit 2; }

machine="${QEMU_MACHINE:-}"
if [ -z "$machine" ]; then
  case "$elf" in
    *thumbv8m.main-none-eabi*) machine=mps3-an547 ;;
    # No ARMv6-M board in QEMU has the RAM; the Cortex-M3 executes the same instructions.
    *thumbv6m-none-eabi*) machine=mps2-an385 ;;
    *) machine=mps2-an386 ;;
  esac
fi

# Semihosting argv: the ELF's name, then the arguments (QEMU doubles commas to escape them).
semihosting="enable=on,target=native,arg=$(basename "$elf")"
for a in "$@"; do semihosting="$semihosting,arg=${a//,/,,}"; done

set +e
timeout -k 5 "${QEMU_TIMEOUT:-120}" qemu-system-arm -machine "$machine" -nographic \
  -monitor none -semihosting-config "$semihosting" -kernel "$elf" "${plugin[@]}" </dev/null
status=$?
set -e
case "$status" in
  0) ;;
  124 | 137) echo "run-cortex-m.sh: timeout on $machine: the firmware hung or never exited" >&2 ;;
  *) echo "run-cortex-m.sh: firmware exited with status $status on $machine" >&2 ;;
esac
exit "$status"
