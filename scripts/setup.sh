#!/usr/bin/env bash
# Installs the system packages reconpatch builds and runs against (Debian bookworm):
#   libtorch-dev (libtorch 1.13, CPU) and libopenblas0-pthread (a fast BLAS; the default
#   reference BLAS is ~36x slower). With --test also what the tests start or drive: 
#   python3-torchvision (the torchvision parity tests), redis-server (the fleet's queue) and
#   chromium (the review page's browser tests); CI uses it; with --dev also the Python tools that regenerate
#   the committed fixtures (python3-torch, python3-torchvision, python3-scipy, python3-sklearn,
#   python3-skimage). Idempotent: does nothing when all are present.
set -euo pipefail
pkgs=(libtorch-dev libopenblas0-pthread cmake ninja-build g++)
if [ "${1:-}" = "--test" ]; then pkgs+=(python3-torchvision redis-server chromium); fi
if [ "${1:-}" = "--dev" ]; then pkgs+=(python3-torch python3-torchvision python3-scipy python3-sklearn python3-skimage); fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup: system packages present (${pkgs[*]})"
  exit 0
fi
line="apt-get install -y --no-install-recommends ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "setup: missing system packages: ${missing[*]}" >&2
  echo "setup: run as root:  apt-get update && $line" >&2
  exit 1
fi
echo "setup: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
