#!/usr/bin/env bash
# Debian/Raspberry Pi OS packages the tests need: PortAudio headers to build PyAudio, systemd
# for `systemd-analyze` (the unit checks), and mosquitto (the MQTT tests start their own broker
# on a loopback port; the package's own service is not needed).  Installs only what is missing;
# uses sudo when not root.
set -euo pipefail
packages=(portaudio19-dev systemd mosquitto)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "installing ${missing[*]} with apt-get" >&2
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
