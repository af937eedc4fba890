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

$(VENV)/.device: setup.cfg constraints.txt | $(BIN)/python
	$(PIP) -e ".[device]"
	touch $@

$(VENV)/.all: setup.cfg constraints.txt | $(BIN)/python
	scripts/install-system-deps.sh
	$(PIP) -e ".[device,mic,convert,plot,test]"
	touch $@ $(VENV)/.device

# The appliance loop on recordings (mock GPIO pins, decisions printed), then per-file results.
demo: $(VENV)/.device models/face_detection_short_range.tflite
	$(BIN)/emotion-edge run --audio-file demo/conversation.flac --image demo/face.jpg --fast --text
	@echo "demo/audio: EmoDB clips acted as happy (03a01Fa), neutral (03a01Nc), angry (03a01Wa), sad"
	@echo "(08a02Tb). EmoDB is one of the speech model's training corpora: this shows the pipeline"
	@echo "working, not accuracy on voices it never heard (models/README.md has those figures)."
	$(BIN)/emotion-edge classify demo/audio/*.flac
	$(BIN)/emotion-edge classify-face demo/face.jpg

# The optional BlazeFace face detector (not shipped; its tests skip without it).  Offline is not
# an error: Haar stays the detector.
models/face_detection_short_range.tflite: | $(VENV)/.device
	-$(BIN)/emotion-convert -q blazeface

# Lint and types first (seconds, strict on edge/), then the suite.
test: lint models/face_detection_short_range.tflite
	$(BIN)/python -m pytest

lint: $(VENV)/.all
	$(BIN)/ruff check .
	$(BIN)/mypy

bench: $(VENV)/.all
	$(BIN)/python -m bench.speech_bench
	$(BIN)/python -m bench.loop_bench --models models --face-image demo/face.jpg

clean:
	rm -rf $(VENV) build *.egg-info
