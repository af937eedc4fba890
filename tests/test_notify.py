"""sd_notify in pure Python against a socket the test binds (path and abstract names)."""

import os
import socket

import pytest

from edge.outputs.notify import Notifier, watchdog_interval_s


@pytest.fixture(params=["path", "abstract"])
def notify_socket(request, tmp_path):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    if request.param == "path":
        address = str(tmp_path / "notify")
        sock.bind(address)
    else:
        name = f"emotion-edge-test-{os.getpid()}-{id(sock)}"
        sock.bind("\0" + name)
        address = "@" + name
    sock.settimeout(1.0)
    yield address, sock
    sock.close()


def test_messages_arrive(notify_socket):
    address, sock = notify_socket
    with Notifier(env={"NOTIFY_SOCKET": address}) as n:
        assert n.enabled
        assert n.ready(status="loading done")
        assert sock.recv(4096) == b"READY=1\nSTATUS=loading done"
        n.watchdog()
        assert sock.recv(4096) == b"WATCHDOG=1"
        n.status("happy 0.80\ncycle 12 ms")
        assert sock.recv(4096) == b"STATUS=happy 0.80 cycle 12 ms"
        n.stopping()
        assert sock.recv(4096) == b"STOPPING=1"
        assert n.sent == 4


def test_without_systemd_everything_is_a_noop():
    n = Notifier(env={})
    assert not n.enabled
    assert n.ready() is False and n.watchdog() is False and n.sent == 0


def test_a_dead_socket_is_logged_not_raised(tmp_path, caplog):
    n = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "missing")})
    assert n.watchdog() is False
    assert n.watchdog() is False
    assert sum("cannot notify" in r.message for r in caplog.records) == 1
    n.close()
    n.close()  # idempotent


def test_watchdog_interval():
    assert watchdog_interval_s({}) is None
    assert watchdog_interval_s({"WATCHDOG_USEC": "10000000"}) == 10.0
    assert watchdog_interval_s({"WATCHDOG_USEC": "10000000", "WATCHDOG_PID": "1"}) is None
    me = str(os.getpid())
    assert watchdog_interval_s({"WATCHDOG_USEC": "2000000", "WATCHDOG_PID": me}) == 2.0


def test_a_receiver_that_does_not_read_never_blocks_the_sender(notify_socket):
    """systemd busy: its queue full, a blocking send stopped the loop's decisions until it read
    again.  The ping is dropped (and counted), the next one goes when there is room."""
    import time

    address, sock = notify_socket
    with Notifier(env={"NOTIFY_SOCKET": address}) as n:
        t0 = time.monotonic()
        results = [n.watchdog() for _ in range(5000)]
        assert time.monotonic() - t0 < 5.0
        assert not all(results) and n.dropped == results.count(False) > 0
        assert n.sent == results.count(True) > 0
        while True:  # systemd catches up
            try:
                sock.recv(4096, socket.MSG_DONTWAIT)
            except (BlockingIOError, TimeoutError):
                break
        assert n.watchdog() and sock.recv(4096) == b"WATCHDOG=1"


def test_ready_waits_for_room_once_and_the_loop_never_does(notify_socket):
    """READY=1 is sent once: dropped from a full queue, systemd waited for it until it killed
    the service.  It waits (briefly) for room; the loop's pings do not."""
    import threading
    import time

    address, sock = notify_socket
    with Notifier(env={"NOTIFY_SOCKET": address}) as n:
        while n.watchdog():  # fill the receiver's queue
            pass
        t0 = time.monotonic()
        assert not n.watchdog() and time.monotonic() - t0 < 0.1

        def drain_soon():
            time.sleep(0.3)
            sock.recv(4096)

        reader = threading.Thread(target=drain_soon)
        reader.start()
        assert n.ready(status="running")  # waited for the room the reader made
        reader.join()
