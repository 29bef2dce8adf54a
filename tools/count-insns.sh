#!/usr/bin/env bash
# Guest instructions a Cortex-M ELF executes under QEMU between two marker functions (a
# cycle proxy: QEMU models no pipeline, cache or flash wait states).
#
#   count-insns.sh [--profile] START_SYMBOL STOP_SYMBOL ELF
#
# The firmware calls the markers around the code to measure; they are #[inline(never)]
# #[no_mangle] functions with different bodies (identical ones would be merged into one
# address). Prints `insns_total N`, `region_insns N` and `region_hits N`; exits with the
# firmware's status. The plugin (tools/insn-count.c) is compiled on first use into target/.
# --profile also prints, after the counts, the region's instructions per function (largest
# first, "N symbol"), from the translation blocks' addresses and the ELF's symbol table.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
profile=
if [ "${1:-}" = --profile ]; then profile=yes; shift; fi
[ $# -eq 3 ] || { echo "usage: count-insns.sh [--profile] START_SYMBOL STOP_SYMBOL ELF" >&2; exit 2; }
start_symbol="$1" stop_symbol="$2" elf="$3"

plugin="$here/../target/tools/insn-count-$(sha256sum "$here/insn-count.c" | cut -c1-12).so"
if [ ! -f "$plugin" ]; then
  mkdir -p "$(dirname "$plugin")"
  cc -shared -fPIC -O2 -o "$plugin.tmp" "$here/insn-count.c"
  mv "$plugin.tmp" "$plugin"
fi

nm="$(rustc --print sysroot)/lib/rustlib/$(rustc -vV | sed -n 's/^host: //p')/bin/llvm-nm"
address() { # the first definition only; awk reads all input (no SIGPIPE under pipefail)
  "$nm" --defined-only "$elf" | awk -v s="$1" '$3 == s && !n { print "0x" $1; n = 1 }'
}
start="$(address "$start_symbol")" stop="$(address "$stop_symbol")"
[ -n "$start" ] && [ -n "$stop" ] || { echo "count-insns.sh: $start_symbol/$stop_symbol not in $elf" >&2; exit 2; }
[ "$start" != "$stop" ] || { echo "count-insns.sh: the markers share address $start" >&2; exit 2; }

counts="$(mktemp)" blocks="$(mktemp)"
trap 'rm -f "$counts" "$blocks"' EXIT
args="$plugin,start=$start,stop=$stop,out=$counts"
[ -z "$profile" ] || args="$args,profile=$blocks"
set +e
"$here/run-cortex-m.sh" --plugin "$args" "$elf" >&2
status=$?
set -e
[ -s "$counts" ] || { echo "count-insns.sh: no counts (QEMU killed?)" >&2; exit 1; }
cat "$counts"
if [ -n "$profile" ]; then
  # Each block is charged to the function symbol at or below its address.
  { "$nm" --defined-only --numeric-sort --demangle "$elf" | awk '$2 ~ /^[tT]$/ {
      # Thumb symbols have bit 0 set in their value; the code starts at the even address.
      $1 = substr($1, 1, length($1) - 1) substr("0022446688aaccee", index("0123456789abcdef", substr($1, length($1))), 1)
      $2 = "F"; print }'
    awk '{ printf "%s B %s\n", substr($1, 3), $2 }' "$blocks"; } |
    awk '{ a = sprintf("%016s", $1); gsub(/ /, "0", a); print a, $0 }' | sort -k1,1 -s |
    awk '$3 == "F" { name = $4; for (i = 5; i <= NF; i++) name = name " " $i; next }
         { sum[name] += $4 } END { for (n in sum) print sum[n], n }' | sort -rn
fi
exit "$status"
