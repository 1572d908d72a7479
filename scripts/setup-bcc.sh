#!/usr/bin/env bash
# Set up what `hubble-otlp sidecar` (BCC) needs on Debian, idempotently: python3-bpfcc, kernel
# headers for the running kernel (BCC compiles against /lib/modules/$(uname -r)/build), tracefs,
# and the tools its tests use (ip, nft). Needs root. Usage: scripts/setup-bcc.sh
set -euo pipefail

if [[ $(id -u) -ne 0 ]]; then
  echo "setup-bcc: needs root (apt-get, /lib/modules, mount)" >&2
  exit 1
fi

release=$(uname -r)
arch=$(dpkg --print-architecture)
modules="/lib/modules/$release"

packages=()
[[ -d /usr/lib/python3/dist-packages/bcc ]] || packages+=(python3-bpfcc)
command -v ip >/dev/null || packages+=(iproute2)
command -v nft >/dev/null || packages+=(nftables)
if [[ ! -d "$modules/build/include" ]] && ! compgen -G "/usr/src/linux-headers-*-$arch" >/dev/null; then
  packages+=(headers)
fi

if (( ${#packages[@]} )); then
  apt-get update -qq
  if [[ " ${packages[*]} " == *" headers "* ]]; then
    # The running kernel's own headers when Debian has them; else the distribution's current ones,
    # whose UAPI and tracepoint definitions are what the sidecar reads.
    packages=("${packages[@]/headers/}")
    if apt-cache show "linux-headers-$release" >/dev/null 2>&1; then
      packages+=("linux-headers-$release")
    else
      packages+=("linux-headers-$arch")
    fi
  fi
  read -r -a wanted <<<"${packages[*]}"
  echo "setup-bcc: installing ${wanted[*]} with apt-get"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${wanted[@]}" >/dev/null
fi

if [[ ! -d "$modules/build/include" ]]; then
  headers=$(find /usr/src -maxdepth 1 -name "linux-headers-*-$arch" | sort -V | tail -n 1)
  if [[ -z "$headers" ]]; then
    echo "setup-bcc: no kernel headers under /usr/src after installing them" >&2
    exit 1
  fi
  mkdir -p "$modules"
  ln -sfn "$headers" "$modules/build"
  common="${headers%-"$arch"}-common"
  [[ -d "$common" ]] && ln -sfn "$common" "$modules/source"
  echo "setup-bcc: $modules/build -> $headers (headers of another kernel version: UAPI only)"
fi

if [[ ! -d /sys/kernel/tracing/events ]]; then
  mount -t tracefs tracefs /sys/kernel/tracing
fi
