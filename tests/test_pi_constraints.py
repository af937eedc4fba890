"""The Raspberry Pi pins keep apt's camera stack importable and install without a compiler.

On a Pi the venv is made with --system-site-packages so apt's picamera2 is visible; apt's
compiled modules (python3-simplejpeg, imported by picamera2) are built for apt's NumPy.  The
files ``constraints-pi-<codename>.txt`` pin the `device` extra for each Raspberry Pi OS release
so that pip's NumPy keeps that ABI, every package comes as a wheel, and PyAudio comes from apt.
How each pin was checked against wheel metadata is recorded in each file's header; these tests
keep the invariants offline.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parent.parent

#: Per Raspberry Pi OS release: its Python, and the NumPy that Debian's python3-numpy ships
#: (apt-cache madison, Debian bookworm/trixie main arm64).  Modules apt built against it need a
#: NumPy with the same major version (C ABI) and at least its C API, i.e. at least this version.
RELEASES = {
    "bookworm": {"python": "3.11", "apt_numpy": Version("1.24.2")},
    "trixie": {"python": "3.13", "apt_numpy": Version("2.2.4")},
}

#: The first release of each package whose wheel requires NumPy 2 (Requires-Dist read from the
#: aarch64 wheels' METADATA: opencv-python-headless 4.12.0.88 wants numpy>=2,<2.3, 4.11.0.86
#: numpy>=1.23.5; ml_dtypes 0.6.0 wants numpy>=2.0.0, 0.5.4 numpy>=1.23.3).
NEEDS_NUMPY_2 = {"opencv-python-headless": Version("4.12"), "ml-dtypes": Version("0.6")}

#: Python packages of the appliance that come from apt on a Pi, never from pip.
FROM_APT = {"pyaudio": "python3-pyaudio", "picamera2": "python3-picamera2"}

#: Pins that differ from constraints.txt on purpose (NumPy ABI; colorzero's setuptools).
PI_SPECIFIC = {"numpy", "opencv-python-headless", "ml-dtypes", "setuptools"}

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)$")


def read_pins(path: Path) -> dict[str, Version]:
    """``name==version`` lines (names canonicalised); anything else but comments fails."""
    pins: dict[str, Version] = {}
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = PIN.match(line)
        assert match, f"{path.name}:{number}: not an exact pin: {line!r}"
        name = canonicalize_name(match[1])
        assert name not in pins, f"{path.name}:{number}: {name} pinned twice"
        pins[name] = Version(match[2])
    return pins


def setup_cfg() -> configparser.ConfigParser:
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    return cfg


def requirements(value: str) -> list[Requirement]:
    lines = (line.strip() for line in value.splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("#")]


def device_requirements() -> list[Requirement]:
    """What `pip install '.[device,formats]'` asks for: install_requires plus the device extra,
    and the formats extra a Pi may add for recordings from phones."""
    cfg = setup_cfg()
    return (requirements(cfg["options"]["install_requires"])
            + requirements(cfg["options.extras_require"]["device"])
            + requirements(cfg["options.extras_require"]["formats"]))


def install_section() -> str:
    text = (REPO / "docs" / "appliance.md").read_text()
    match = re.search(r"^## Install on a Raspberry Pi\n(.*?)(?=^## )", text, re.M | re.S)
    assert match, 'docs/appliance.md has no section "## Install on a Raspberry Pi"'
    return match[1]


@pytest.fixture(params=sorted(RELEASES))
def release(request) -> str:
    return request.param


@pytest.fixture
def pins(release) -> dict[str, Version]:
    return read_pins(REPO / f"constraints-pi-{release}.txt")


def test_numpy_has_apts_major_version_and_at_least_its_api(release, pins):
    apt = RELEASES[release]["apt_numpy"]
    numpy = pins["numpy"]
    assert numpy.major == apt.major, (
        f"constraints-pi-{release}.txt: numpy {numpy} over apt's {apt} breaks picamera2 "
        f"(\"numpy.dtype size changed\")")
    assert numpy >= apt, f"numpy {numpy} is older than the {apt} apt's modules were built for"


def test_bookworm_keeps_numpy_1():
    assert read_pins(REPO / "constraints-pi-bookworm.txt")["numpy"] < Version("2")


def test_nothing_pinned_needs_numpy_2_where_numpy_is_1():
    for release in RELEASES:
        pins = read_pins(REPO / f"constraints-pi-{release}.txt")
        if pins["numpy"] < Version("2"):
            for name, first in NEEDS_NUMPY_2.items():
                assert pins[name] < first, (
                    f"constraints-pi-{release}.txt: {name} {pins[name]} requires NumPy 2 "
                    f"(from {first} on)")


def test_opencv_stays_4x(pins):
    assert Version("4") <= pins["opencv-python-headless"] < Version("5")


def test_nothing_needs_a_compiler_or_comes_from_apt(pins):
    # PyAudio has no aarch64 wheel: a pin would make pip build it (portaudio19-dev, gcc).
    assert not set(pins) & set(FROM_APT), "apt provides these; pip must not build them"


def test_every_device_requirement_is_pinned_and_allowed(pins):
    for req in device_requirements():
        name = canonicalize_name(req.name)
        assert name in pins, f"{name} (setup.cfg) is not pinned and not provided by apt"
        assert req.specifier.contains(pins[name], prereleases=True), (
            f"{name}=={pins[name]} does not satisfy setup.cfg's {req}")


def test_shared_pins_match_the_tested_constraints(pins):
    # What CI tests (constraints.txt) is what a Pi runs, except where the Pi must differ.
    tested = read_pins(REPO / "constraints.txt")
    drift = {name: (str(version), str(tested[name])) for name, version in pins.items()
             if name not in PI_SPECIFIC and name in tested and tested[name] != version}
    assert drift == {}, f"Pi pin differs from constraints.txt (pi, tested): {drift}"


def test_the_mic_extra_is_what_apt_replaces():
    # If the `mic` extra gains a package, apt must provide it on a Pi (or it gets pinned here).
    mic = requirements(setup_cfg()["options.extras_require"]["mic"])
    assert {canonicalize_name(r.name) for r in mic} <= set(FROM_APT)


def test_the_install_section_installs_from_apt_and_with_the_pi_pins(release):
    section = install_section()
    apt = [line for line in section.splitlines() if "apt install" in line]
    assert apt and all(f" {p}" in apt[0] for p in FROM_APT.values()), apt
    assert not any("portaudio19-dev" in line for line in apt), "no PyAudio build on a Pi"
    assert "python3 -m venv --system-site-packages" in section
    assert f"pip install -c constraints-pi-{release}.txt -e '.[device]'" in section
    assert "[device,mic]" not in section


def test_the_camera_hint_names_the_install_section():
    from edge.sources.camera import PICAMERA2_HINT

    title = re.search(r'"([^"]+)"\)$', PICAMERA2_HINT)
    assert title and f"## {title[1]}\n" in (REPO / "docs" / "appliance.md").read_text()
