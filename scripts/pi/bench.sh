#!/usr/bin/env bash
# make pi-bench: arm64 instructions per stage and per decision cycle of the appliance loop,
# counted by a QEMU TCG plugin (scripts/pi/insn_counter.c) while scripts/pi/bench.py replays
# demo/conversation.flac + demo/face.jpg in the emulated Pi; then a table for Pi 4, Pi 5 and
# Pi Zero 2 W (scripts/pi/bench_report.py states the IPC ranges), start-up, and the peak RSS of
# `emotion-edge run` (scripts/pi/peak_rss.py).
#
# The plugin is compiled against include/qemu/qemu-plugin.h from Debian's qemu source package of
# the same version as the installed qemu-user (downloaded with apt-get source into the cache,
# through a private apt configuration: the system's apt sources are not touched), and loaded by
# Debian's dynamically linked qemu-aarch64 (the -static one cannot load plugins), which runs
# inside the chroot with its own x86-64 libraries under /opt/hostqemu.
#
# Environment: as check.sh; PI_BENCH_DETECTORS (default "blazeface haar").
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"
pi_need_root
"$here/install.sh"

# Build tools for the plugin, and Debian's dynamically linked qemu-aarch64.
missing=()
for p in gcc pkg-config libglib2.0-dev qemu-user xz-utils; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    pi_log "installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

# The plugin header from the qemu source package matching the installed qemu-user.
version=$(dpkg-query -W -f='${source:Version}' qemu-user)
src=$PI_CACHE/qemu-src
header_dir=$src/$version/include/qemu
if [ ! -f "$header_dir/qemu-plugin.h" ]; then
    pi_log "fetching Debian's qemu $version source package for the plugin API header"
    mkdir -p "$src/lists/partial"
    codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
    {
        echo "deb-src $PI_MIRROR $codename main"
        echo "deb-src $PI_MIRROR $codename-updates main"
        echo "deb-src ${PI_MIRROR%/debian}/debian-security $codename-security main"
    } >"$src/sources.list"
    apt_opts=(-o "Dir::Etc::SourceList=$src/sources.list" -o Dir::Etc::SourceParts=/dev/null
              -o "Dir::State::Lists=$src/lists" -o Debug::NoLocking=1)
    apt-get "${apt_opts[@]}" update -qq
    (cd "$src" && apt-get "${apt_opts[@]}" source -qq --download-only "qemu=$version" 2>/dev/null)
    upstream=${version#*:}
    orig=$(ls "$src/qemu_${upstream%-*}".orig.tar.*)
    mkdir -p "$header_dir"
    tar -xf "$orig" -O --wildcards '*/include/qemu/qemu-plugin.h' >"$header_dir/qemu-plugin.h"
fi
hostqemu=$PI_ROOTFS/opt/hostqemu
mkdir -p "$hostqemu"
gcc -shared -fPIC -O2 -Wall -Werror -I "$header_dir" $(pkg-config --cflags glib-2.0) \
    "$here/insn_counter.c" -o "$hostqemu/insn_counter.so"
cp /usr/bin/qemu-aarch64 "$hostqemu/"
for lib in $( (ldd /usr/bin/qemu-aarch64; ldd "$hostqemu/insn_counter.so") | grep -o '/[^ ]*' | sort -u); do
    cp -L "$lib" "$hostqemu/"
done

bench=$PI_ROOTFS/opt/bench
rm -rf "$bench" && mkdir -p "$bench/out"
cp -r "$PI_REPO/demo" "$here/bench.py" "$bench/"
results=()
for detector in ${PI_BENCH_DETECTORS:-blazeface haar}; do
    pi_log "counting instructions: replay with $detector (emulated, with the counting plugin)"
    unshare --mount --propagation private --fork -- /bin/sh -c '
        set -e
        root=$1 cpu=$2
        mount --bind /proc "$root/proc"
        exec env -i HOME=/root LANG=C.UTF-8 TZ=UTC PATH=/opt/venv/bin:/usr/bin:/bin \
            unshare --root="$root" --wd=/opt/bench \
            /opt/hostqemu/ld-linux-x86-64.so.2 --library-path /opt/hostqemu \
            /opt/hostqemu/qemu-aarch64 -cpu "$cpu" \
            -plugin "/opt/hostqemu/insn_counter.so,page=/opt/bench/out/counter-$0" \
            /opt/venv/bin/python bench.py --counter "/opt/bench/out/counter-$0" \
            --detector "$0" --out "out/$0.json"
    ' "$detector" "$PI_ROOTFS" "$PI_CPU"
    results+=("$bench/out/$detector.json")
done

# Peak RSS of `run` itself: emulated (the static qemu, no plugin) and natively, each beside an
# empty interpreter measured the same way (peak_rss.py).
cp "$here/peak_rss.py" "$bench/"
pi_log "peak RSS of emotion-edge run (emulated and native)"
replay=(--fast --mock-gpio --audio-file demo/conversation.flac --image demo/face.jpg)
pi_guest -w /opt/bench "$PI_PY" peak_rss.py out/rss-arm64-run.json "$PI_VENV/bin/emotion-edge" \
    run "${replay[@]}" >/dev/null 2>&1 || true
pi_guest -w /opt/bench "$PI_PY" peak_rss.py out/rss-arm64-empty.json - || true
host_bin=$(dirname "$PI_HOST_PY")
(cd "$bench" && env -i HOME="$HOME" PATH="$host_bin:/usr/bin:/bin" LANG=C.UTF-8 "$PI_HOST_PY" \
    peak_rss.py out/rss-x86-run.json "$host_bin/emotion-edge" run "${replay[@]}" >/dev/null 2>&1 \
    && "$PI_HOST_PY" peak_rss.py out/rss-x86-empty.json -) || true
rss=()
for name in arm64-run arm64-empty x86-run x86-empty; do
    rss+=(--peak-rss "$name=$bench/out/rss-$name.json")
done
python3 "$here/bench_report.py" "${results[@]}" "${rss[@]}" | tee "$PI_CACHE/bench-report.txt"
