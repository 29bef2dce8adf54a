#!/usr/bin/env bash
# Runs this firmware on QEMU's netduinoplus2 machine (an STM32F405, Cortex-M4F) and prints
# its defmt log:
#
#   cargo build --release --no-default-features --features qemu
#   ./qemu-run.sh target/thumbv7em-none-eabihf/release/gradguard-board-example
#
# or as the cargo runner:
#
#   CARGO_TARGET_THUMBV7EM_NONE_EABIHF_RUNNER=./qemu-run.sh \
#     cargo run --release --no-default-features --features qemu
#
# Needs qemu-system-arm (Debian/Ubuntu: apt install qemu-system-arm) and, to decode the log,
# defmt-print (cargo install defmt-print); without it the raw log frames go to ELF.defmt.
# Exit status: the firmware's (0 = it trained to the required accuracy), 124 on a timeout.
set -euo pipefail
[ $# -ge 1 ] && [ -f "$1" ] || { echo "usage: qemu-run.sh ELF" >&2; exit 2; }
elf=$1
run() {
  timeout -k 5 "${QEMU_TIMEOUT:-300}" qemu-system-arm -machine netduinoplus2 -nographic \
    -monitor none -semihosting-config enable=on,target=native -kernel "$elf" </dev/null
}
if command -v defmt-print >/dev/null; then
  run | defmt-print -e "$elf"
else
  echo "qemu-run.sh: no defmt-print (cargo install defmt-print): raw log in $elf.defmt" >&2
  run >"$elf.defmt"
fi
