#!/usr/bin/env bash
# Build (once) the emulated Pi userland: Debian arm64 packages from the Debian mirror, unpacked by
# mmdebstrap, plus a --system-site-packages venv at /opt/venv with pip from PyPI.  Rebuilt only
# when this script, common.sh or the package list change (a stamp records their hash).
#
# mmdebstrap's "extract" variant unpacks packages without running their maintainer scripts
# (running them would need binfmt_misc).  What those scripts would have done and Python needs is
# redone here: the BLAS/LAPACK alternatives that NumPy links to, and trixie's merged-/usr links.
set -euo pipefail
source "$(dirname "$0")/common.sh"
pi_need_root

stamp=$PI_ROOTFS/.emotion-edge-rootfs
key=$(cat "$0" "$(dirname "$0")/common.sh" | sha256sum | cut -c1-16)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$key" ]; then
    exit 0
fi
pi_need_tools
mkdir -p "$PI_CACHE"
tmp=$PI_ROOTFS.tmp
rm -rf "$tmp"
pi_log "building the $PI_SUITE arm64 userland in $PI_ROOTFS (${PI_DEBS[*]})"
mmdebstrap --quiet --mode=root --variant=extract --arch=arm64 \
    --include="$(IFS=,; echo "${PI_DEBS[*]}")" "$PI_SUITE" "$tmp" "$PI_MIRROR"
# Merged /usr (trixie): base-files would make these links; the ELF interpreter is /lib/ld-linux-*.
for d in bin lib sbin; do
    [ -e "$tmp/$d" ] || ln -s "usr/$d" "$tmp/$d"
done
lib=$tmp/usr/lib/aarch64-linux-gnu
ln -sf blas/libblas.so.3 "$lib/libblas.so.3"
ln -sf lapack/liblapack.so.3 "$lib/liblapack.so.3"
mkdir -p "$tmp/proc" "$tmp/opt" "$tmp/etc/ssl/certs"
# The public CA bundle (ca-certificates' postinst would build it): recent pip loads it at start,
# though the guest never goes online.
cp -L /etc/ssl/certs/ca-certificates.crt "$tmp/etc/ssl/certs/"
cp /usr/bin/qemu-aarch64-static "$tmp/usr/bin/"
rm -rf "$PI_ROOTFS"
mv "$tmp" "$PI_ROOTFS"

# The venv as a Pi user makes it (docs/appliance.md), but --without-pip: ensurepip would run pip
# in a subprocess, an exec() of an arm64 binary.  Debian's own pip wheel installs the pip the
# Makefile's venv rule asks for, downloaded on the host (the guest has no CA bundle: it never
# reaches the network).
pi_log "creating $PI_VENV (--system-site-packages) and installing pip"
pi_guest /usr/bin/python3 -m venv --system-site-packages --without-pip "$PI_VENV"
mkdir -p "$PI_ROOTFS/opt/wheels"
pi_download "$PI_ROOTFS/opt/wheels" "pip>=23.2"
pip_whl=$(cd "$PI_ROOTFS" && ls usr/share/python-wheels/pip-*.whl)
pi_guest "$PI_PY" "/$pip_whl/pip" install -q --disable-pip-version-check --no-cache-dir \
    --no-index --find-links /opt/wheels "pip>=23.2"
echo "$key" > "$PI_ROOTFS/.emotion-edge-rootfs"
