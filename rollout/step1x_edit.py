"""Step1X-Edit behind editrl's ``Editor`` interface, through diffusers' ``Step1XEditPipeline``.

Status: no released diffusers ships ``Step1XEditPipeline`` (it is proposed in huggingface/diffusers PR
#12249; the installed 0.42.1 lacks it), so this adapter cannot be written against, or tested on, the real
class. ``Step1XEditEditor.from_pretrained`` therefore checks what is installed and raises
``Step1XEditUnavailable`` naming the diffusers version and the missing class. When a diffusers release adds
the class it still raises (``NotImplementedError`` naming that release) until the adapter's conditioning /
velocity / decode methods are written and tested against it, in the way ``rollout.flux_kontext`` wraps
``FluxKontextPipeline``.

Checkpoint layout it will expect (diffusers layout of ``Step1X-Edit-v1p1-diffusers``)::

    local_dir/
      model_index.json          "_class_name": "Step1XEditPipeline"
      scheduler/ text_encoder/ (Qwen2.5-VL) processor/ transformer/ vae/
"""

from __future__ import annotations

from typing import Any

PIPELINE_CLASS = "Step1XEditPipeline"


class Step1XEditUnavailable(ImportError):
    """The installed diffusers has no ``Step1XEditPipeline``."""


def diffusers_status() -> tuple[str, bool]:
    """``(installed diffusers version, whether it provides Step1XEditPipeline)``."""
    import diffusers

    return diffusers.__version__, hasattr(diffusers, PIPELINE_CLASS)


def require_step1x_pipeline() -> Any:
    """The ``Step1XEditPipeline`` class, or a ``Step1XEditUnavailable`` error saying what is missing."""
    version, available = diffusers_status()
    if not available:
        raise Step1XEditUnavailable(
            f"Step1X-Edit needs diffusers.{PIPELINE_CLASS}, which the installed diffusers {version} does not "
            f"provide (it is proposed in huggingface/diffusers PR #12249 and not in a release). Install a "
            f"diffusers release that has {PIPELINE_CLASS}, or use flux-kontext:/path or qwen-image-edit:/path.")
    import diffusers

    return getattr(diffusers, PIPELINE_CLASS)


class Step1XEditEditor:
    """Placeholder for the Step1X-Edit adapter: loading reports exactly what is missing (see module docstring)."""

    @classmethod
    def from_pretrained(cls, local_dir: str, dtype: Any = None, device: str | None = None,
                        **kwargs: Any) -> "Step1XEditEditor":
        """Validate the checkpoint folder, then report why Step1X-Edit cannot be loaded with this install."""
        from rollout.pipeline_folders import read_model_index

        read_model_index(local_dir)  # a bad folder is reported before the missing dependency
        require_step1x_pipeline()
        version, _ = diffusers_status()
        raise NotImplementedError(
            f"diffusers {version} provides {PIPELINE_CLASS}, but editrl's Step1X-Edit adapter has not been "
            f"written against it yet (no diffusers with the class was available when it was built); "
            f"see rollout/flux_kontext.py for the pattern to follow.")
