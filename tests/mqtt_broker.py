"""A real Mosquitto for the MQTT tests and the benchmark: its own config, password file and a
self-signed CA made here, on free loopback ports.  Tests skip when the binary is absent
(``scripts/install-system-deps.sh`` installs the Debian package).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if Path("/usr/sbin/mosquitto").exists() else None)
PASSWD = shutil.which("mosquitto_passwd")
USER, PASSWORD = "edge", "s3cret-for-tests"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_ca(folder: Path, name: str, *, server: bool = True) -> Path:
    """A self-signed CA ``<name>-ca.pem`` and, with ``server``, a certificate for 127.0.0.1 and
    localhost signed by it (``<name>-server.pem`` / ``<name>-server.key``)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = dt.datetime.now(dt.UTC)

    def cert(subject: str, key: Any, issuer: Any, issuer_key: Any, ca: bool) -> Any:
        builder = (x509.CertificateBuilder()
                   .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
                   .issuer_name(issuer).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - dt.timedelta(minutes=5))
                   .not_valid_after(now + dt.timedelta(days=2))
                   .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
        if ca:
            builder = builder.add_extension(x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False), critical=True)
            builder = builder.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        else:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{name} test CA")])
    ca = cert(f"{name} test CA", ca_key, ca_name, ca_key, True)
    ca_path = folder / f"{name}-ca.pem"
    ca_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    if server:
        key = ec.generate_private_key(ec.SECP256R1())
        (folder / f"{name}-server.pem").write_bytes(
            cert("localhost", key, ca_name, ca_key, False).public_bytes(serialization.Encoding.PEM))
        (folder / f"{name}-server.key").write_bytes(key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption()))
    return ca_path


class Mosquitto:
    """A Mosquitto broker on two loopback ports: ``port`` (plain) and ``tls_port``, both asking
    for ``USER``/``PASSWORD``; ``ca`` signed its certificate.  Persistence is on, so a client
    subscribed with ``clean_session=False`` gets what was published while it was away, across
    :meth:`restart`."""

    def __init__(self, folder: Path) -> None:
        assert MOSQUITTO and PASSWD
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)
        self.port, self.tls_port = free_port(), free_port()
        self.ca = make_ca(folder, "good")
        self.password_file = folder / "password.txt"
        self.password_file.write_text(PASSWORD + "\n")
        subprocess.run([PASSWD, "-c", "-b", str(folder / "passwd"), USER, PASSWORD], check=True,
                       capture_output=True)
        self.conf = folder / "mosquitto.conf"
        self.conf.write_text(f"""\
user root
per_listener_settings false
allow_anonymous false
password_file {folder / 'passwd'}
persistence true
persistence_location {folder}/
autosave_interval 3600
max_queued_messages 100000
max_inflight_messages 100
log_dest file {folder / 'mosquitto.log'}
listener {self.port} 127.0.0.1
listener {self.tls_port} 127.0.0.1
cafile {self.ca}
certfile {folder / 'good-server.pem'}
keyfile {folder / 'good-server.key'}
""")
        self.proc: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([MOSQUITTO, "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                    with socket.create_connection(("127.0.0.1", self.tls_port), timeout=0.2):
                        return
            except OSError:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"mosquitto exited: {self.log()}") from None
                time.sleep(0.02)
        raise RuntimeError(f"mosquitto did not listen: {self.log()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)  # saves the persistence file
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def restart(self, down_s: float = 0.0) -> None:
        self.stop()
        time.sleep(down_s)
        self.start()

    def log(self) -> str:
        path = self.folder / "mosquitto.log"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def config_overrides(self, device: str, **more: object) -> list[str]:
        """``--set`` arguments that point ``emotion-edge run`` at this broker."""
        values: dict[str, object] = {"enabled": "true", "host": "127.0.0.1", "port": self.port,
                                     "device_id": device, "username": USER,
                                     "password_file": str(self.password_file),
                                     "retry_initial_s": 0.2, "retry_max_s": 1.0, **more}
        return [arg for k, v in values.items() for arg in ("--set", f"mqtt.{k}={v}")]


class Subscriber:
    """A paho client that records ``(topic, payload, retain)`` for a topic filter; with
    ``session`` it keeps a persistent session (QoS 1), so it misses nothing across a restart."""

    def __init__(self, broker: Mosquitto, topic: str = "#", *, session: str | None = None,
                 tls: bool = False) -> None:
        import paho.mqtt.client as mqtt

        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=session or f"test-sub-{os.getpid()}-{id(self)}",
                                  clean_session=session is None)
        self.client.username_pw_set(USER, PASSWORD)
        self.client.reconnect_delay_set(0.05, 0.2)

        def on_connect(c: Any, u: Any, flags: Any, reason: Any, p: Any) -> None:
            c.subscribe(topic, qos=1)

        def on_subscribe(*_: Any) -> None:
            self.connected.set()

        def on_message(c: Any, u: Any, msg: Any) -> None:
            with self.lock:
                self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

        self.client.on_connect = on_connect
        self.client.on_subscribe = on_subscribe
        self.client.on_message = on_message
        self.client.connect("127.0.0.1", broker.port, keepalive=10)
        self.client.loop_start()
        assert self.connected.wait(5), "test subscriber could not subscribe"

    def on(self, suffix: str) -> list[tuple[str, bytes, bool]]:
        with self.lock:
            return [m for m in self.messages if m[0].endswith(suffix)]

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.02)
        return bool(predicate())

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
