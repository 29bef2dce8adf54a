#!/usr/bin/env bash
# One command that installs what gradguard's CI (.ci/run), tests and tools need:
#
#   tools/setup.sh [GROUP...]      default: all
#
#   rust      the pinned toolchain (rust-toolchain.toml) with rustfmt/clippy/llvm-tools, the
#             bare-metal targets of the no_std builds, and the MSRV toolchain (1.89)
#   cortex-m  QEMU for the firmware tests (qemu-system-arm), a C compiler for the
#             instruction-count plugin, flip-link (the firmware's linker)
#   x86       qemu-x86_64 (SSE2 and AVX2 paths on an emulated CPU)
#   aarch64   the aarch64 target, its cross linker and libc, qemu-aarch64
#   wasm      the wasm32-wasip1 target and Node.js >= 18 (its WASI runner)
#   nightly   nightly with Miri and cargo-fuzz
#
# Idempotent: installs only what is missing. apt-get needs root or sudo (Debian/Ubuntu).
set -euo pipefail
cd "$(dirname "$0")/.."

say() { echo "[setup] $*" >&2; }
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
apt_updated=0
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  if [ "$apt_updated" = 0 ]; then
    say "apt-get update"
    $sudo apt-get update -q >/dev/null
    apt_updated=1
  fi
  say "apt-get install ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q "${missing[@]}" >/dev/null
}
targets() { # targets [+TOOLCHAIN] TRIPLE... (the pinned toolchain unless given)
  local toolchain=()
  if [ "${1#+}" != "$1" ]; then toolchain=("$1"); shift; fi
  local installed missing=() t
  installed="$(rustup "${toolchain[@]}" target list --installed)"
  for t in "$@"; do grep -qx "$t" <<<"$installed" || missing+=("$t"); done
  [ ${#missing[@]} -eq 0 ] || { say "rustup target add ${missing[*]}"; rustup "${toolchain[@]}" target add "${missing[@]}"; }
}
cargo_tool() { # cargo_tool BINARY CRATE
  command -v "$1" >/dev/null && return 0
  say "cargo install $2 (compiles for a minute or two)"
  cargo install "$2" --locked
}

group() {
  case "$1" in
    rust)
      rustup show active-toolchain >/dev/null || rustup toolchain install "$(sed -n 's/^channel = "\(.*\)"/\1/p' rust-toolchain.toml)"
      rustup component add rustfmt clippy llvm-tools
      targets thumbv7em-none-eabihf thumbv6m-none-eabi riscv32imac-unknown-none-elf \
        thumbv8m.main-none-eabihf x86_64-unknown-none aarch64-unknown-none aarch64-unknown-none-softfloat
      rustup toolchain list | grep -q '^1\.89' || rustup toolchain install 1.89 --profile minimal
      ;;
    cortex-m)
      targets thumbv7em-none-eabihf thumbv8m.main-none-eabihf
      apt_install qemu-system-arm gcc
      cargo_tool flip-link flip-link
      ;;
    x86) apt_install qemu-user ;;
    aarch64)
      targets aarch64-unknown-linux-gnu
      apt_install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user
      ;;
    wasm)
      targets wasm32-wasip1
      command -v node >/dev/null || apt_install nodejs
      [ "$(node -p 'process.versions.node.split(".")[0]')" -ge 18 ] ||
        { say "node >= 18 needed for node:wasi"; exit 1; }
      ;;
    nightly)
      rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
      rustup +nightly component add miri rust-src
      command -v c++ >/dev/null || apt_install g++
      cargo_tool cargo-fuzz cargo-fuzz
      ;;
    all) for g in rust cortex-m x86 aarch64 wasm nightly; do group "$g"; done ;;
    *) say "unknown group $1 (rust cortex-m x86 aarch64 wasm nightly all)"; exit 2 ;;
  esac
}

[ $# -gt 0 ] || set -- all
for g in "$@"; do group "$g"; done
say "ready: $*"
