#!/usr/bin/env bash
# Runs gradguard's tests on another CPU than this one, under emulation:
#
#   cross-test.sh x86 CPU [cargo test args...]   x86_64 under qemu-x86_64 -cpu CPU, e.g.
#                                                Nehalem (SSE4.2, no AVX: the SSE2 path; any
#                                                AVX instruction would SIGILL) or Haswell
#                                                (AVX2+FMA; QEMU emulates no AVX-512)
#   cross-test.sh aarch64 [cargo test args...]   aarch64 (NEON) under qemu-aarch64
#   cross-test.sh wasm [cargo test args...]      wasm32-wasip1 with simd128 under node
#
# From the repository root; tools/setup.sh x86|aarch64|wasm installs the emulators.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
[ $# -ge 1 ] || { sed -n '2,11p' "$0" >&2; exit 2; }
platform="$1"; shift
case "$platform" in
  x86)
    [ $# -ge 1 ] || { echo "cross-test.sh x86 needs a CPU model" >&2; exit 2; }
    cpu="$1"; shift
    target=x86_64-unknown-linux-gnu
    # An explicit --target keeps build scripts and proc-macros on the host CPU.
    export CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER="qemu-x86_64 -cpu $cpu"
    ;;
  aarch64)
    target=aarch64-unknown-linux-gnu
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu max"
    ;;
  wasm)
    target=wasm32-wasip1
    node_flags=--no-warnings
    [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 20 ] ||
      node_flags="$node_flags --experimental-wasi-unstable-preview1"
    export CARGO_TARGET_WASM32_WASIP1_RUNNER="node $node_flags $here/wasi-run.mjs"
    export CARGO_TARGET_WASM32_WASIP1_RUSTFLAGS="-C target-feature=+simd128"
    ;;
  *) echo "cross-test.sh: platform must be x86, aarch64 or wasm" >&2; exit 2 ;;
esac
echo "+ cargo test --target $target $*" >&2
exec cargo test --target "$target" "$@"
