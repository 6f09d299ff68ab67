#!/usr/bin/env bash
# System packages CI needs beyond the Rust toolchain and Python: valgrind, which the
# instruction-count benchmark (benches/instructions.rs) runs under. Installs only what
# is missing, with apt-get (CI runs as root; sudo otherwise).
set -euo pipefail
if command -v valgrind >/dev/null 2>&1; then
    exit 0
fi
echo "== ci-deps: installing valgrind"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo=sudo
fi
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq valgrind
command -v valgrind >/dev/null 2>&1 || { echo "valgrind did not install" >&2; exit 1; }
