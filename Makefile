# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PY ?= python
export HF_HUB_OFFLINE = 1
export WANDB_MODE ?= disabled

.PHONY: install demo test
install: .installed
.installed: pyproject.toml
	$(PY) -m pip install torch==2.14.1 torchvision==0.29.1
	$(PY) -m pip install -e ".[dev]"
	touch .installed

demo: install
	editrl demo --out runs/demo

test: install
	$(PY) -m pytest -q
