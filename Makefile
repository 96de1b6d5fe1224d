# Two commands do all the set-up on a fresh machine: `make demo` and `make test` (inside a venv: see README.md).
# PY: the interpreter (python, else python3, found at make time); TORCH_INDEX: where torch comes from (PyPI's
# Linux wheel is the CUDA build, ~3 GB to download; `TORCH_INDEX=https://download.pytorch.org/whl/cpu`, ~0.2 GB).
PY ?= $(shell command -v python >/dev/null 2>&1 && echo python || echo python3)
TORCH_INDEX ?=
export HF_HUB_OFFLINE = 1
export WANDB_MODE ?= disabled

.PHONY: install demo test
install: .installed
.installed: pyproject.toml
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1 $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX))
	$(PY) -m pip install -e ".[dev]"
	touch .installed

demo: install
	$(PY) -m editrl.cli demo --out runs/demo

test: install
	$(PY) -m pytest -q
