# Sourced by the scripts in scripts/pi/: where the emulated Raspberry Pi userland lives and how to
# run an arm64 program in it.  Everything generated goes under $PI_CACHE (gitignored /cache/).
#
# The userland is Debian 12 "bookworm" arm64 (what Raspberry Pi OS Bookworm is built from; or
# Debian 13 "trixie" with PI_SUITE=trixie), run by
# QEMU's user-mode emulator as a Cortex-A72 (the Pi 4's core).  No binfmt_misc registration is
# needed: every arm64 program is started explicitly through qemu-aarch64-static inside a chroot,
# so nothing in the guest may exec() another arm64 binary (pip builds no sdists, the venv is made
# --without-pip, console scripts are run as `python SCRIPT`).
#
# Needs root (chroot, mount namespace) and the Debian packages mmdebstrap and qemu-user-static.

PI_REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
PI_CACHE=${PI_CACHE:-$PI_REPO/cache/pi}
PI_SUITE=${PI_SUITE:-bookworm}
PI_MIRROR=${PI_MIRROR:-http://deb.debian.org/debian}
PI_CPU=${PI_CPU:-cortex-a72}
case $PI_SUITE in
    # Python and the newest glibc of the release, for the wheels' tags.
    bookworm) PI_PYVER=3.11 PI_GLIBC_MAX=36 ;;
    trixie) PI_PYVER=3.13 PI_GLIBC_MAX=41 ;;
    *) echo "PI_SUITE=$PI_SUITE: only bookworm and trixie have Pi constraints" >&2; exit 2 ;;
esac
PI_ROOTFS=$PI_CACHE/rootfs-$PI_SUITE
PI_WHEELS=$PI_ROOTFS/opt/wheels
PI_CONSTRAINTS=$PI_REPO/constraints-pi-$PI_SUITE.txt
# The x86 side: downloads wheels (all network access is on the host; the guest installs
# offline) and gives the reference results.  `make pi-check` makes it the repo's .venv.
PI_HOST_PY=${PI_HOST_PY:-$PI_REPO/.venv/bin/python}
# Inside the guest.
PI_VENV=/opt/venv
PI_PY=$PI_VENV/bin/python
# Debian arm64 packages in the userland.  python3-pywt stands in for Raspberry Pi OS's
# python3-simplejpeg (not in Debian; picamera2 imports it): both are C extensions built by the
# distribution against its NumPy (1.24 on bookworm, 2.2 on trixie), so importing pywt from the
# venv, with whatever NumPy pip put there, answers the same question for real.
PI_DEBS=(python3 python3-venv python3-numpy python3-pyaudio python3-pywt)

pi_log() { printf '[pi] %s\n' "$*" >&2; }

# pi_download DEST [PIP_ARG]...: download aarch64 wheels for the release's CPython (never an
# sdist) into DEST.
pi_download() {
    local dest=$1; shift
    local plat=(--platform manylinux2014_aarch64)
    local v
    for v in $(seq 17 "$PI_GLIBC_MAX"); do plat+=(--platform "manylinux_2_${v}_aarch64"); done
    "$PI_HOST_PY" -m pip download -q --disable-pip-version-check --only-binary=:all: \
        --python-version "$PI_PYVER" --implementation cp --abi "cp${PI_PYVER/./}" --abi abi3 \
        --abi none "${plat[@]}" -d "$dest" "$@"
}

pi_need_root() {
    if [ "$(id -u)" -ne 0 ]; then
        echo "scripts/pi needs root (chroot and a private mount namespace); run it with sudo" >&2
        exit 2
    fi
}

pi_need_tools() {
    local missing=()
    command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
    [ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
    [ ${#missing[@]} -eq 0 ] && return 0
    pi_log "installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
}

# pi_guest [-w DIR] [-q QEMU_OPTION]... PROGRAM [ARG]...: run an arm64 PROGRAM (absolute path in
# the guest) inside the userland, in DIR (default /), with a clean environment.  /proc is bound
# in a private mount namespace, so nothing stays mounted when it ends, even on a crash.
pi_guest() {
    local workdir=/ qemu_opts=()
    while [ $# -gt 0 ]; do
        case $1 in
            -w) workdir=$2; shift 2 ;;
            -q) qemu_opts+=("$2"); shift 2 ;;
            *) break ;;
        esac
    done
    unshare --mount --propagation private --fork -- /bin/sh -c '
        set -e
        root=$1 workdir=$2 cpu=$3; shift 3
        mount --bind /proc "$root/proc"
        exec env -i HOME=/root LANG=C.UTF-8 TZ=UTC PATH=/opt/venv/bin:/usr/bin:/bin \
            unshare --root="$root" --wd="$workdir" /usr/bin/qemu-aarch64-static -cpu "$cpu" "$@"
    ' sh "$PI_ROOTFS" "$workdir" "$PI_CPU" "${qemu_opts[@]}" "$@"
}
