# Sourced by scripts/install.sh and scripts/test.sh (not run on its own).
# Sets ROOT (the checkout) and PY (the Python to install into and run with), and
# offers ensure_lavapipe (the software WebGPU adapter, Debian/Ubuntu).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# apt_install PKG...: install Debian packages (root or sudo); fails when impossible.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || return 1
  local sudo=""
  if [ "$(id -u)" != 0 ]; then
    command -v sudo >/dev/null 2>&1 || { echo "wgllm: need root or sudo to apt-get install $*" >&2; return 1; }
    sudo="sudo"
  fi
  $sudo apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# Mesa lavapipe (Vulkan on the CPU): the adapter of last resort, and the one CI tests on.
# Skipped when apt is missing or the adapter is already there.
# A failure only warns: wgllm still runs on a hardware adapter without it.
ensure_lavapipe() {
  command -v apt-get >/dev/null 2>&1 || return 0
  local libs
  libs="$( (ldconfig -p || /sbin/ldconfig -p) 2>/dev/null || true)"  # not `| grep -q`: SIGPIPE under pipefail
  case "$libs" in *libvulkan_lvp.so*) case "$libs" in *libvulkan.so.1*) return 0 ;; esac ;; esac
  echo "wgllm: installing the software WebGPU adapter (apt: mesa-vulkan-drivers libvulkan1)"
  apt_install mesa-vulkan-drivers libvulkan1 ||
    echo "wgllm: WARNING: could not install mesa-vulkan-drivers libvulkan1; without them only hardware adapters work" >&2
}

# The Python: $PYTHON (default python3) itself, unless it is an OS-managed
# interpreter outside any virtualenv (Debian's /usr/bin/python3: pip refuses it,
# PEP 668); then the virtualenv $WGLLM_VENV (default <checkout>/.venv), made on
# first use (with python3-venv from apt when missing).
PYTHON="${PYTHON:-python3}"
if "$PYTHON" -c 'import os, sys, sysconfig
sys.exit(0 if sys.prefix == sys.base_prefix and os.path.isfile(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED")) else 1)'; then
  VENV="${WGLLM_VENV:-$ROOT/.venv}"
  if ! "$VENV/bin/python" -m pip --version >/dev/null 2>&1; then
    echo "wgllm: $("$PYTHON" -c 'import sys; print(sys.executable)') is managed by the OS; making the virtualenv $VENV"
    if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
      apt_install python3-venv && "$PYTHON" -m venv "$VENV"
    fi
    [ -e "$VENV/.gitignore" ] || printf '*\n' >"$VENV/.gitignore"  # keep it out of git
  fi
  PY="$VENV/bin/python"
else
  VENV=""
  PY="$PYTHON"
fi
