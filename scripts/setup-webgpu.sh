#!/usr/bin/env bash
# Installs what kiln's WebGPU tests need on Debian 12 (bookworm) without a GPU:
#   - Mesa 25's lavapipe (software Vulkan) from bookworm-backports: Dawn (the `webgpu` npm
#     package) runs on it with core limits and shader-f16. Stock bookworm's Mesa 22 does not work
#     (Dawn rejects it and requestAdapter() returns null).
#   - Debian's chromium, for the headless browser test of the WGSL artifact (SwiftShader inside).
# Idempotent; needs root (or sudo). Safe on a machine with a real GPU: lavapipe is only a fallback
# ICD next to the real driver.
set -euo pipefail
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
have_mesa25() {
  v=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
  [ -n "$v" ] && dpkg --compare-versions "$v" ge 25
}
packages=()
have_mesa25 || packages+=(mesa)
command -v chromium >/dev/null 2>&1 || packages+=(chromium)
if [ ${#packages[@]} -eq 0 ]; then
  echo "setup-webgpu: Mesa 25 lavapipe and chromium already installed"
  exit 0
fi
if [ ! -f /etc/apt/sources.list.d/bookworm-backports.list ] && ! grep -rqs bookworm-backports /etc/apt/sources.list /etc/apt/sources.list.d/; then
  echo 'deb http://deb.debian.org/debian bookworm-backports main' | $SUDO tee /etc/apt/sources.list.d/bookworm-backports.list >/dev/null
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
command -v chromium >/dev/null 2>&1 || $SUDO apt-get install -y -qq -o DPkg::Lock::Timeout=600 chromium >/dev/null
echo "setup-webgpu: installed $(dpkg-query -W -f='mesa-vulkan-drivers ${Version}' mesa-vulkan-drivers), $(chromium --version 2>/dev/null | head -1)"
