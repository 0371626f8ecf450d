#!/usr/bin/env bash
# Prepare an offline build of mmkd's `cuda` feature, then build it:
#
#   bench/cuda-offline.sh [--pack]   # as root on Debian 12 (apt reaches Debian's mirrors only);
#                                    # --pack also writes bench/bin/mmkd-cuda.xz for a GPU machine
#
# Why: Burn's `cuda` backend depends on cubecl-cuda, which always pulls cubecl-llvm; its build
# dependency tracel-llvm-bundler downloads a prebuilt LLVM 23 bundle from GitHub into
# $XDG_DATA_HOME/tracel/tracel-llvm-23.1.0-4 unless that folder already holds an install marked by
# `.tracel-llvm-installed`. Offline, the download fails, even for `cargo check`. This script puts
# a stand-in there: an `llvm-config` that answers for Debian's LLVM 22 (llvm-22-dev, static
# libraries), rewriting library paths in `--system-libs` to `-l` names (the bundler turns a path
# like /usr/lib/x86_64-linux-gnu/libz3.so into `-l libz3`, which the linker cannot find).
# LLVM 22 against llvm-sys 231's declarations links as long as no LLVM 23-only C function is
# used; cubecl-llvm's nvptx path did not need one here.
#
# Nothing in it needs a GPU: CUDA itself (libcuda, nvrtc) is loaded when a CUDA device is first
# used, so the binary builds on any machine and runs where a driver is installed.
set -euo pipefail
cd "$(dirname "$0")/.."
llvm=/usr/lib/llvm-22
if [ ! -x "$llvm/bin/llvm-config" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq llvm-22-dev libpolly-22-dev libzstd-dev libz3-dev libxml2-dev zlib1g-dev libedit-dev libffi-dev clang >/dev/null
fi
prefix="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-23.1.0-4"
mkdir -p "$prefix/bin"
cat > "$prefix/bin/llvm-config" <<SHIM
#!/bin/sh
# Stand-in for the tracel LLVM bundle (bench/cuda-offline.sh): Debian's LLVM 22.
case " \$* " in
  *" --system-libs "*) "$llvm/bin/llvm-config" "\$@" | sed -E 's#(^| )/[^ ]*/lib([A-Za-z0-9_+.-]+)\.(so|a)[^ ]*#\1-l\2#g' ;;
  *) exec "$llvm/bin/llvm-config" "\$@" ;;
esac
SHIM
chmod +x "$prefix/bin/llvm-config"
touch "$prefix/.tracel-llvm-installed"
echo "LLVM stand-in at $prefix (llvm-config $("$prefix/bin/llvm-config" --version))" >&2
# A separate target folder: the cuda build does not disturb the default one. Measured here
# (2 cores): about 30 minutes from nothing, LLVM linked statically, a 258 MB binary.
pack=0
if [ "${1:-}" = "--pack" ]; then pack=1; shift; fi
target=${CARGO_TARGET_DIR:-target/cuda}
CARGO_TARGET_DIR=$target cargo build -p mmkd --features cuda "$@"
echo "built $target/debug/mmkd with --features cuda" >&2
if [ "$pack" = 1 ]; then
  # For a GPU machine without a network (the device tool carries at most 64 MiB): stripped
  # and xz-compressed, 32 MB here; bench/gpu.sh unpacks bench/bin/mmkd-cuda.xz by itself.
  mkdir -p bench/bin
  strip -o bench/bin/mmkd-cuda "$target/debug/mmkd"
  xz -9 -T0 -f bench/bin/mmkd-cuda
  ls -l bench/bin/mmkd-cuda.xz >&2
fi
