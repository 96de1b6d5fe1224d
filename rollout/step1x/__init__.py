"""Step1X-Edit pieces no library provides: the token-refiner connector (``connector``), the official -> diffusers
weight mapping and version detection (``convert``), the Qwen2.5-VL prompt encoder (``prompt``), the official
schedule / norm-rescaled CFG / position ids (``sampler``) and the checkpoint folder layouts (``layout``). The editor
that puts them together is ``rollout.step1x_edit.Step1XEditEditor``."""
