#!/usr/bin/env bash
# make pi-check: the device runtime on an emulated Raspberry Pi (Debian 12 arm64, Cortex-A72 under
# qemu-user; PI_SUITE=trixie for Debian 13), installed from aarch64 wheels with
# constraints-pi-$PI_SUITE.txt into a
# --system-site-packages venv beside Debian's own NumPy/PyAudio; a smoke suite run there and on
# this machine, every decision compared (scripts/pi/compare.py prints the PASS/FAIL table).
#
# Environment: PI_CACHE (default cache/pi), PI_HOST_PY (x86 python that has emotion-edge; default
# .venv/bin/python), PI_CPU (default cortex-a72), PI_TOL_LSB (score tolerance in steps of 1/256,
# default 4; compare.py says why).  Outputs stay in cache/pi/check-out/.
# Needs root (chroot).  A cold run (userland + wheels) takes 2.5-6 min, a warm one ~2 min.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
source "$here/common.sh"
pi_need_root
t0=$(date +%s)

"$here/build-rootfs.sh"
t_rootfs=$(date +%s)

"$here/install.sh"
t_install=$(date +%s)
work=$(mktemp -d "${TMPDIR:-/tmp}/pi-check.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The smoke suite: the same commands on both sides, from a folder holding demo/.  The loop's
# budget is opened up (deadline 5 s, no degrading) so that emulation speed cannot change what
# the loop does; decisions are then comparable cycle by cycle.
smoke=$PI_ROOTFS/opt/smoke
rm -rf "$smoke" && mkdir -p "$smoke/out/arm64" "$work/x86/out/x86"
cp -r "$PI_REPO/demo" "$smoke/"
cp -r "$PI_REPO/demo" "$work/x86/"
cp "$here/divergence.py" "$here/abi_probe.py" "$smoke/"
clips=$(cd "$PI_REPO" && ls demo/audio/*.flac | tr '\n' ' ')
loop="--fast --mock-gpio --audio-file demo/conversation.flac --image demo/face.jpg"
loop+=" --set loop.deadline_s=5 --set loop.overruns_to_degrade=100 --set loop.overrun_window=100"
cases=(
    "speech|emotion-edge classify --json $clips"
    "speech-phone|emotion-edge classify --json demo/phone/03a01Wa.amr demo/phone/08a02Tb.m4a"
    "face-blazeface|emotion-edge classify-face --json demo/face.jpg"
    "face-haar|emotion-edge classify-face --json --detector haar demo/face.jpg"
    "face-phone|emotion-edge classify-face --json demo/phone/face.heic"
    "run-blazeface|emotion-edge run $loop"
    "run-haar|emotion-edge run $loop --set camera.detector=haar"
    "check|emotion-edge check --no-devices --mock-gpio"
    "divergence|divergence.py demo out/SIDE/divergence.json"
)

host_bin=$(dirname "$PI_HOST_PY")
run_case() {  # run_case SIDE NAME COMMAND...
    local side=$1 name=$2; shift 2
    local out=out/$side/$name rc=0
    local prog=$1; shift
    local args=("${@//SIDE/$side}")
    if [ "$side" = arm64 ]; then
        case $prog in
            emotion-edge) prog=$PI_VENV/bin/emotion-edge ;;
            *) prog=/opt/smoke/$prog ;;
        esac
        pi_guest -w /opt/smoke "$PI_PY" "$prog" "${args[@]}" >"$smoke/$out.stdout" \
            2>"$smoke/$out.stderr" || rc=$?
        echo "$rc" >"$smoke/$out.rc"
    else
        case $prog in
            emotion-edge) prog=$host_bin/emotion-edge ;;
            *) prog=$here/$prog ;;
        esac
        (cd "$work/x86" && env -i HOME="$HOME" PATH="$host_bin:/usr/bin:/bin" LANG=C.UTF-8 \
            TZ=UTC "$PI_PY_HOST" "$prog" "${args[@]}" >"$out.stdout" 2>"$out.stderr") || rc=$?
        echo "$rc" >"$work/x86/$out.rc"
    fi
}
PI_PY_HOST=$PI_HOST_PY
for c in "${cases[@]}"; do
    name=${c%%|*}
    read -r -a argv <<<"${c#*|}"
    pi_log "smoke: $name (arm64, emulated)"
    t=$(date +%s%N)
    run_case arm64 "$name" "${argv[@]}"
    echo $((($(date +%s%N) - t) / 1000000)) >"$smoke/out/arm64/$name.ms"
    run_case x86 "$name" "${argv[@]}"
done
# The NumPy ABI question, on the arm64 side only: Debian's extension with the venv's NumPy, and,
# on bookworm, the control (NumPy 2, the version constraints.txt pins, put in front) that must
# break it.  Trixie's extensions are built on NumPy 2, which newer NumPy 2 releases keep working
# and no NumPy 1 wheel exists for its Python 3.13: no control there.
compare_opts=()
run_case arm64 abi abi_probe.py
if [ "$PI_SUITE" = bookworm ]; then
    pi_log "smoke: NumPy ABI (arm64), and its NumPy 2 control"
    np2=$(sed -n 's/^numpy==//p' "$PI_REPO/constraints.txt")
    mkdir -p "$PI_CACHE/control"
    ls "$PI_CACHE/control"/numpy-"$np2"-*.whl >/dev/null 2>&1 \
        || pi_download "$PI_CACHE/control" --no-deps "numpy==$np2"
    python3 -m zipfile -e "$(ls "$PI_CACHE/control"/numpy-"$np2"-*.whl)" "$smoke/numpy2"
    run_case arm64 abi-control abi_probe.py /opt/smoke/numpy2
else
    # The Pi pins keep apt's own NumPy here (pip installs none).
    compare_opts+=(--no-abi-control --debian-numpy-ok)
fi
t_smoke=$(date +%s)

cp -r "$smoke/out/arm64" "$work/x86/out/"
{
    echo "userland: $((t_rootfs - t0)) s (0 when cached)"
    echo "wheels + install: $((t_install - t_rootfs)) s"
    echo "smoke suite (both sides): $((t_smoke - t_install)) s"
    echo "total: $((t_smoke - t0)) s"
} >"$work/x86/out/timings.txt"
# Kept for a look after a FAIL (and as CI's artefact): every output, both sides.
rm -rf "$PI_CACHE/check-out" && cp -r "$work/x86/out" "$PI_CACHE/check-out"
pi_log "outputs in $PI_CACHE/check-out/{x86,arm64}"
rc=0
python3 "$here/compare.py" "${compare_opts[@]}" --tol-lsb "${PI_TOL_LSB:-4}" \
    --numpy-pin "$(sed -n 's/^numpy==//p' "$PI_CONSTRAINTS")" \
    "$work/x86/out/x86" "$work/x86/out/arm64" || rc=$?
cat "$work/x86/out/timings.txt"
exit "$rc"
