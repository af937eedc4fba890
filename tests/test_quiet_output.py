"""Hiding C libraries' stderr noise must never lose stderr itself."""

from __future__ import annotations

import os
import threading

from edge.optional import quiet_native_output


def test_concurrent_and_nested_blocks_restore_stderr():
    before = os.fstat(2)

    def work():
        for i in range(200):
            with quiet_native_output("test"):
                if i % 3 == 0:
                    with quiet_native_output("nested"):
                        pass

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    after = os.fstat(2)
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


def test_native_writes_inside_are_discarded_and_outside_kept(capfd):
    with quiet_native_output("test"):
        os.write(2, b"noise from C\n")
    os.write(2, b"a real line\n")
    err = capfd.readouterr().err
    assert "noise from C" not in err and "a real line" in err
