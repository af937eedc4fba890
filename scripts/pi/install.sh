#!/usr/bin/env bash
# Install this work tree's device runtime into the emulated Pi's venv, as a Pi user would
# (docs/appliance.md, "Install on a Raspberry Pi"), from aarch64 wheels and offline inside the
# guest.  Builds the userland first if needed.  Used by check.sh and bench.sh.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"
pi_need_root
"$here/build-rootfs.sh"
work=$(mktemp -d "${TMPDIR:-/tmp}/pi-install.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/src" "$work/dist"

# The project as the Pi gets it: a wheel of this work tree (tracked and untracked files that git
# does not ignore), built on the host: pip would build a source tree in a subprocess, an exec()
# the guest cannot do without binfmt_misc.
(cd "$PI_REPO" && git ls-files -co --exclude-standard -z | tar --null -T - -cf -) | tar -C "$work/src" -xf -
pi_log "building the emotion-edge wheel"
"$PI_HOST_PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$work/dist" "$work/src" >&2
wheel=$(ls "$work"/dist/emotion_edge-*.whl)
proj=$PI_ROOTFS/opt/project
rm -rf "$proj" && mkdir -p "$proj"
cp "$wheel" "$PI_CONSTRAINTS" "$proj/"

# aarch64 wheels for the wheel's [device] extra under the Pi pins, and [formats] (PyAV: phones'
# recordings for `classify`, also checked here); offline when already cached.
if ! pi_download "$PI_WHEELS" --no-index --find-links "$PI_WHEELS" -c "$PI_CONSTRAINTS" \
        "$wheel[device,formats]" >/dev/null 2>&1; then
    pi_log "downloading aarch64 wheels into $PI_WHEELS"
    pi_download "$PI_WHEELS" -c "$PI_CONSTRAINTS" "$wheel[device,formats]"
fi
rm -f "$PI_WHEELS"/emotion_edge-*.whl   # pip download copies the project wheel too

# The install a Pi user does (docs/appliance.md), offline: resolve the [device] extra under the
# Pi pins, then put this tree's code in place even if its version string did not change.
pi_log "installing the device runtime into the emulated Pi's venv"
pip_args=(-m pip install -q --disable-pip-version-check --no-cache-dir --no-index
          --find-links /opt/wheels -c "/opt/project/$(basename "$PI_CONSTRAINTS")")
pi_guest "$PI_PY" "${pip_args[@]}" "/opt/project/$(basename "$wheel")[device,formats]"
pi_guest "$PI_PY" "${pip_args[@]}" --no-deps --force-reinstall "/opt/project/$(basename "$wheel")"
