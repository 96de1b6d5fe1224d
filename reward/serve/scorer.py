"""In-process reward scoring: load a checkpoint once, score edits in batches and groups with a shared prefix.

``RewardScorer`` is the plain class the Ray service wraps and the in-process reward client used by
curation, online RL and best-of-N (``score_groups`` is the client protocol). A bad item (undecodable
image, empty instruction) yields a ``ScoredEdit`` with ``error`` set; the other items are scored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch

from reward.model.config import RewardModelConfig
from reward.model.inputs import ImageLike, InputError, RewardInputBuilder, load_rgb


@dataclass
class EditInput:
    """One edit to score: source image, instruction, edited image (PIL images or paths)."""

    source: ImageLike
    instruction: str
    edited: ImageLike


@dataclass
class ScoredEdit:
    """Per-dimension Gaussian of one edit plus the aggregate ``score`` used for ranking (NaN when ``error``)."""

    mu: dict[str, float]
    sigma: dict[str, float]
    score: float
    score_sigma: float
    error: str | None = None

    @classmethod
    def failed(cls, dimensions: Sequence[str], message: str) -> "ScoredEdit":
        nan = math.nan
        return cls(mu={d: nan for d in dimensions}, sigma={d: nan for d in dimensions}, score=nan,
                   score_sigma=nan, error=message)


def aggregate(mu: torch.Tensor, log_sigma: torch.Tensor, how: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Aggregate (B, D) Gaussians into one (mu, sigma) per row, as ``reward.train.loss.aggregate`` defines it."""
    from reward.train.loss import aggregate as loss_aggregate

    return loss_aggregate(mu, log_sigma, how)


@dataclass
class _Prepared:
    """A validated item: decoded images and a clean instruction, or the reason it cannot be scored."""

    source: Any = None
    instruction: str = ""
    edited: list[Any] = field(default_factory=list)
    error: str | None = None
    edited_errors: list[str | None] = field(default_factory=list)


class RewardScorer:
    """Scores edits with a loaded reward model; ``score`` for single edits, ``score_group(s)`` for groups."""

    def __init__(self, model: Any, processor: Any, model_cfg: RewardModelConfig, batch_size: int = 32,
                 device: str | torch.device | None = None):
        from reward.official.inference import input_builder

        if hasattr(model, "with_inference"):  # the model reads the inputs of the config's mode (native / official)
            model = model.with_inference(model_cfg.inference)
        self.model = model.eval()
        self.processor = processor
        self.cfg = model_cfg
        self.batch_size = int(batch_size)
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.model.to(self.device)
        self.builder: RewardInputBuilder | Any = input_builder(processor, model_cfg)
        self.dimensions = tuple(model_cfg.dimensions)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device | None = None,
                        batch_size: int = 32, dtype: str | None = None) -> "RewardScorer":
        """Load a reward checkpoint folder (``reward.model.editreward.save_checkpoint``) for scoring."""
        from reward.model.editreward import load_checkpoint

        model, processor, model_cfg = load_checkpoint(path, device=device, dtype=dtype)
        return cls(model, processor, model_cfg, batch_size=batch_size, device=device)

    # -- public API ----------------------------------------------------------------------------------
    def score(self, items: Sequence[EditInput]) -> list[ScoredEdit]:
        """Score single edits in batches of ``batch_size`` (one full sequence per edit, both dimensions at once)."""
        results: list[ScoredEdit | None] = [None] * len(items)
        ready: list[tuple[int, Any, str, Any]] = []
        for i, item in enumerate(items):
            try:
                instruction = self.builder.check_instruction(item.instruction)
                ready.append((i, load_rgb(item.source, "source"), instruction, load_rgb(item.edited, "edited")))
            except InputError as err:
                results[i] = ScoredEdit.failed(self.dimensions, str(err))
        for start in range(0, len(ready), self.batch_size):
            chunk = ready[start:start + self.batch_size]
            batch = self.builder([c[1] for c in chunk], [c[2] for c in chunk], [c[3] for c in chunk])
            with torch.inference_mode():
                out = self.model(**batch.to(self.device))
            for (i, *_), scored in zip(chunk, self._to_scored(out.mu, out.log_sigma)):
                results[i] = scored
        return results  # type: ignore[return-value]

    def score_group(self, source: ImageLike, instruction: str, edited: Sequence[ImageLike]) -> list[ScoredEdit]:
        """Score candidates of one (source, instruction), encoding the shared prefix once."""
        return self.score_groups([(source, instruction, list(edited))])[0]

    def score_groups(self, groups: Sequence[tuple[ImageLike, str, Sequence[ImageLike]]]) -> list[list[ScoredEdit]]:
        """The reward-client protocol: one list of ScoredEdit per (source, instruction, [edited, ...]) group.

        Prefixes of up to ``batch_size`` groups are encoded in one batch; candidates of those groups are then
        scored ``batch_size`` at a time against the cached prefixes.
        """
        prepared = [self._prepare_group(g) for g in groups]
        results: list[list[ScoredEdit | None]] = []
        for p in prepared:
            if p.error is not None:
                results.append([ScoredEdit.failed(self.dimensions, p.error) for _ in p.edited_errors])
            else:
                results.append([None if e is None else ScoredEdit.failed(self.dimensions, e) for e in p.edited_errors])
        live = [gi for gi, p in enumerate(prepared) if p.error is None and any(e is None for e in p.edited_errors)]
        for start in range(0, len(live), self.batch_size):
            chunk = live[start:start + self.batch_size]
            self._score_group_chunk([prepared[gi] for gi in chunk], [results[gi] for gi in chunk])
        return results  # type: ignore[return-value]

    # -- internals -----------------------------------------------------------------------------------
    def _prepare_group(self, group: Any) -> _Prepared:
        try:
            source, instruction, edited = group
            edited = list(edited)
        except (TypeError, ValueError):
            return _Prepared(error=f"expected (source, instruction, [edited, ...]), got {type(group).__name__}")
        p = _Prepared(edited=[None] * len(edited), edited_errors=[None] * len(edited))
        try:
            p.instruction = self.builder.check_instruction(instruction)
            p.source = load_rgb(source, "source")
        except InputError as err:
            p.error = str(err)
        for j, e in enumerate(edited):
            try:
                p.edited[j] = load_rgb(e, "edited")
            except InputError as err:
                p.edited_errors[j] = str(err)
        return p

    def _score_group_chunk(self, groups: list[_Prepared], results: list[list[ScoredEdit | None]]) -> None:
        if self.cfg.inference == "official":
            self._score_group_chunk_official(groups, results)
            return
        prefix_batch = self.builder.prefixes([g.source for g in groups], [g.instruction for g in groups])
        todo = [(k, j) for k, g in enumerate(groups) for j, err in enumerate(g.edited_errors) if err is None]
        with torch.inference_mode():
            prefix = self.model.encode_prefix(**prefix_batch.to(self.device))
            for start in range(0, len(todo), self.batch_size):
                chunk = todo[start:start + self.batch_size]
                suffix = self.builder.suffixes([groups[k].edited[j] for k, j in chunk],
                                               [groups[k].source for k, _ in chunk]).to(self.device)
                rows = torch.tensor([k for k, _ in chunk], dtype=torch.long, device=self.device)
                out = self.model.forward_with_prefix(prefix, rows, **suffix)
                for (k, j), scored in zip(chunk, self._to_scored(out.mu, out.log_sigma)):
                    results[k][j] = scored

    def _score_group_chunk_official(self, groups: list[_Prepared], results: list[list[ScoredEdit | None]]) -> None:
        """Official-mode groups: one cached prefix (system turn + source image) per group serves every candidate
        and both passes (reward.official.inference.official_group_scores); same scores as ``score``."""
        from reward.official.inference import official_group_scores

        todo = [(k, j) for k, g in enumerate(groups) for j, err in enumerate(g.edited_errors) if err is None]
        with torch.inference_mode():
            mu, log_sigma = official_group_scores(self.model, self.builder, [g.source for g in groups],
                                                  [g.instruction for g in groups],
                                                  [(k, groups[k].edited[j]) for k, j in todo], self.batch_size)
        for (k, j), scored in zip(todo, self._to_scored(mu, log_sigma)):
            results[k][j] = scored

    def _to_scored(self, mu: torch.Tensor, log_sigma: torch.Tensor) -> list[ScoredEdit]:
        mu, log_sigma = mu.float(), log_sigma.float()
        agg_mu, agg_sigma = aggregate(mu, log_sigma, self.cfg.aggregation)
        sigma = log_sigma.exp()
        out = []
        for b in range(mu.shape[0]):
            out.append(ScoredEdit(mu={d: float(mu[b, i]) for i, d in enumerate(self.dimensions)},
                                  sigma={d: float(sigma[b, i]) for i, d in enumerate(self.dimensions)},
                                  score=float(agg_mu[b]), score_sigma=float(agg_sigma[b])))
        return out
