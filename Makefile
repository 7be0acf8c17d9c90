# Set-up, demo, tests. Everything lives in .venv; nothing is installed system-wide except the
# X11/Xvfb libraries napari's tests need (installed only when missing and when running as root).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# torch and torchvision must match; these are the builds the package index here offers. Users with
# their own index install any matching pair first (setup.cfg only asks for torch>=2.1).
TORCH_PIN := torch==2.14.1 torchvision==0.29.1
APT_PACKAGES := xvfb libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-randr0 libxcb-shape0 \
	libxcb-xfixes0 libxcb-render-util0 libxcb-image0 libxkbcommon-x11-0 libxcb-cursor0 libgl1 libegl1 \
	libfontconfig1 libdbus-1-3
export OMP_WAIT_POLICY := PASSIVE

.PHONY: setup demo test lint benchmark benchmark-scale clean system-deps

setup: $(VENV)/.installed

system-deps:
	@if [ "$$(id -u)" = "0" ] && ! command -v Xvfb >/dev/null 2>&1; then \
		echo "installing X11/Xvfb libraries for napari"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES) >/dev/null; \
	fi

$(VENV)/.installed: setup.cfg pyproject.toml | system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q $(TORCH_PIN)
	$(BIN)/python -m pip install -q -e '.[all,offline,test]'
	touch $@

demo: setup
	$(BIN)/maskdistill run examples/images --project runs/demo --num-classes 4
	@echo "Results: runs/demo/annotations.json (COCO) and runs/demo/overview.png"

benchmark: setup
	$(BIN)/python -m benchmarks.run_benchmark --out runs/benchmark

# seconds per image and peak memory per stage at 1,000 and 5,000 generated images, GUI operation times
benchmark-scale: setup
	$(BIN)/python -m benchmarks.scale --out runs/benchmark-scale

test: setup lint
	$(BIN)/python -m pytest -q tests

# the settings live in pyproject.toml
lint: setup
	$(BIN)/ruff check engine maskdistill_napari tests benchmarks
	$(BIN)/mypy engine maskdistill_napari

clean:
	rm -rf runs build *.egg-info
