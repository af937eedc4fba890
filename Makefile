# Two entry points for a fresh machine; both create/use .venv/ in this folder.
#   make demo   - install the device runtime and run the appliance on the bundled demo media
#   make test   - install everything (apt packages too), lint (ruff, mypy) and run the test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip install -q -c constraints.txt

.PHONY: demo test lint bench clean

# --system-site-packages: on Raspberry Pi OS, picamera2 comes from apt and must stay visible.
$(BIN)/python:
	$(PYTHON) -m venv --system-site-packages $(VENV)
	$(BIN)/python -m pip install -q --upgrade "pip>=23.2"

# formats: PyAV, so `classify` also reads phones' M4A/AMR recordings.
$(VENV)/.device: setup.cfg constraints.txt | $(BIN)/python
	$(PIP) -e ".[device,formats]"
	touch $@

$(VENV)/.all: setup.cfg constraints.txt | $(BIN)/python
	scripts/install-system-deps.sh
	$(PIP) -e ".[device,formats,mic,convert,plot,test]"
	touch $@ $(VENV)/.device

# The appliance loop on recordings (mock GPIO pins, decisions printed), then per-file results.
demo: $(VENV)/.device
	$(BIN)/emotion-edge run --audio-file demo/conversation.flac --image demo/face.jpg --fast --text
	@echo "demo/audio: EmoDB clips acted as happy (03a01Fa), neutral (03a01Nc), angry (03a01Wa), sad"
	@echo "(08a02Tb). EmoDB is one of the speech model's training corpora: this shows the pipeline"
	@echo "working, not accuracy on voices it never heard (models/README.md has those figures)."
	$(BIN)/emotion-edge classify demo/audio/*.flac
	@echo "demo/phone: two of them as a phone keeps them (an AMR call at 8 kHz, which goes to the"
	@echo "narrowband model, and an M4A voice memo), and the face as a phone keeps a photo (HEIC)."
	$(BIN)/emotion-edge classify demo/phone/03a01Wa.amr demo/phone/08a02Tb.m4a
	$(BIN)/emotion-edge classify-face demo/face.jpg demo/phone/face.heic

# On a Raspberry Pi (Raspberry Pi OS 64-bit Bookworm or Trixie): the device runtime with the Pi's
# pins, which keep apt's NumPy ABI for picamera2 and take PyAudio from apt (docs/appliance.md,
# "Install on a Raspberry Pi").  apt needs sudo, so its line is only printed.  Marks the device
# runtime installed, so `make demo` then uses it as it is; formats (PyAV, pi-heif) is what the
# demo's phone recordings and photo need, as on a desktop (and as `make pi-check` installs).
PI_CODENAME ?= $(shell . /etc/os-release 2>/dev/null && echo "$$VERSION_CODENAME")
PI_CONSTRAINTS = constraints-pi-$(PI_CODENAME).txt
PI_APT = python3-venv python3-picamera2 python3-pyaudio python3-lgpio

.PHONY: pi-install
pi-install:
	@test "$$(uname -m)" = aarch64 || { echo "make pi-install is for Raspberry Pi OS 64-bit (aarch64);" \
	    "this machine is $$(uname -m): use make demo or make test" >&2; exit 1; }
	@test "$$(getconf LONG_BIT)" = 64 || { echo "make pi-install needs Raspberry Pi OS 64-bit: this" \
	    "is a 32-bit system on a 64-bit kernel, for which the interpreter has no wheel" >&2; exit 1; }
	@test -f "$(PI_CONSTRAINTS)" || { echo "no $(PI_CONSTRAINTS): Raspberry Pi OS Bookworm or" \
	    "Trixie is needed (or PI_CODENAME=bookworm|trixie)" >&2; exit 1; }
	@echo "apt packages this needs (once): sudo apt install $(PI_APT)"
	@$(MAKE) --no-print-directory $(BIN)/python
	$(BIN)/python -m pip install -q -c $(PI_CONSTRAINTS) -e ".[device,formats]"
	touch $(VENV)/.device
	@$(BIN)/python -c "import picamera2" 2>/dev/null && echo "picamera2 importable" \
	    || echo "picamera2 not importable: sudo apt install $(PI_APT)"

# Lint and types first (seconds, strict on edge/), then the suite.
test: lint
	$(BIN)/python -m pytest

lint: $(VENV)/.all
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(VENV)/.all
	$(BIN)/python -m bench.speech_bench
	$(BIN)/python -m bench.loop_bench --models models --face-image demo/face.jpg --audio demo/conversation.flac

clean:
	rm -rf $(VENV) build *.egg-info

# An emulated Raspberry Pi on this machine (docs/pi-emulation.md): Debian 12 arm64 run by
# qemu-user as a Cortex-A72, no binfmt_misc needed; needs root (chroot) and installs mmdebstrap
# and qemu-user-static if missing.  Generated files go to cache/pi/.
#   make pi-check  - install the Pi pins from aarch64 wheels beside Debian's arm64 NumPy/PyAudio,
#                    run the smoke suite there and here, compare every decision (PASS/FAIL table)
#   make pi-bench  - arm64 instructions per stage and per cycle (QEMU plugin), as ms and % of the
#                    hop on a Pi 4, Pi 5 and Pi Zero 2 W, plus start-up and peak RSS
.PHONY: pi-check pi-bench
pi-check: $(VENV)/.device
	PI_HOST_PY=$(abspath $(BIN)/python) scripts/pi/check.sh

pi-bench: $(VENV)/.device
	PI_HOST_PY=$(abspath $(BIN)/python) scripts/pi/bench.sh
