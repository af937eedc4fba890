"""Run a console script (``emotion-edge run ...``) in this process and report its peak RSS.

Usage: python peak_rss.py OUT.json SCRIPT [ARG]...

Writes ``{"VmHWM": kB, "VmRSS": kB, "exit": status}`` to OUT.json when the script ends, however
it ends.  Under qemu-user, /proc/self/status is the emulator's: the guest's memory plus QEMU's
own (translated code included), so ``bench.sh`` also measures an empty interpreter the same way.
"""

from __future__ import annotations

import json
import runpy
import sys


def vm_status() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = int(value.split()[0])
    return out


def main() -> int:
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    if len(sys.argv) < 3:
        sys.exit("usage: python peak_rss.py OUT.json SCRIPT [ARG]...")
    dest, script, *args = sys.argv[1:]
    sys.argv = [script, *args]
    status: object = 0
    try:
        if script != "-":
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        status = exc.code
    finally:
        with open(dest, "w") as f:
            json.dump({**vm_status(), "exit": status}, f)
            f.write("\n")
    return status if isinstance(status, int) else 1


if __name__ == "__main__":
    sys.exit(main())
