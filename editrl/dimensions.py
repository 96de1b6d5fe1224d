"""The scored dimensions of an edit, in contract order (docs/contracts.md): every per-dimension score, label and
reward head of the project (editworld truth and annotators, reward data and heads, the service) uses this order."""

DIMENSIONS: tuple[str, ...] = ("instruction_following", "visual_quality")

__all__ = ["DIMENSIONS"]
