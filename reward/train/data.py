"""Preference pairs for reward-model training: loading, tie handling, splits, a dataset and a collate.

Two on-disk layouts are read:

- editworld ``pairs.jsonl`` (docs/contracts.md): ``group_id, source, instruction, preferred, rejected,
  preferred_scores, rejected_scores, tie, disentangle``; image paths relative to the file's folder;
- the official EditReward-Data JSON: a list of ``{prompt, path_src, path1 (preferred), path2,
  model1_dim1_score, model1_dim2_score, model2_dim1_score, model2_dim2_score, tie_case?, ...}``.

Every pair remembers where it came from (``file:line`` or ``file[index]``) so that a bad image or field
is reported there. The collate turns B pairs into one batch of 2B sequences (winners first, then
losers) so that the trainer runs a single forward per micro-batch.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from editrl.dimensions import DIMENSIONS
from editrl.io import DataError, iter_jsonl, load_image, resolve_path

EDITWORLD_PAIR_FIELDS = ("source", "instruction", "preferred", "rejected", "preferred_scores", "rejected_scores")
OFFICIAL_PAIR_FIELDS = ("prompt", "path_src", "path1", "path2")


@dataclass(frozen=True)
class PreferencePair:
    """One human comparison: ``preferred`` was judged at least as good as ``rejected`` for this edit."""

    source: str
    instruction: str
    preferred: str
    rejected: str
    preferred_scores: tuple[float, ...]  # per dimension, DIMENSIONS order
    rejected_scores: tuple[float, ...]
    tie: bool
    group: str  # pairs of one group share source and instruction; splits never cut a group
    origin: str  # "file:line" or "file[index]", for error messages

    @property
    def disentanglable(self) -> bool:
        """A tie whose dimensions disagree (paper eq. 6): one image wins dimension 1, the other dimension 2."""
        if not self.tie or len(self.preferred_scores) < 2:
            return False
        d1 = self.preferred_scores[0] - self.rejected_scores[0]
        d2 = self.preferred_scores[1] - self.rejected_scores[1]
        return d1 * d2 < 0

    def swapped(self) -> "PreferencePair":
        """The same comparison read the other way round."""
        return replace(self, preferred=self.rejected, rejected=self.preferred,
                       preferred_scores=self.rejected_scores, rejected_scores=self.preferred_scores)


# ---- loading -------------------------------------------------------------------------------------

def pair_file(path: str | Path) -> Path:
    """The file ``load_pairs(path)`` reads: a dataset folder's ``pairs.jsonl`` or ``editreward_pairs.json``, or
    ``path`` itself."""
    path = Path(path)
    if path.is_dir():
        for name in ("pairs.jsonl", "editreward_pairs.json"):
            if (path / name).is_file():
                return path / name
        raise DataError(path, "no pairs.jsonl or editreward_pairs.json in this folder")
    return path


def load_pairs(path: str | Path, image_root: str | Path | None = None) -> list[PreferencePair]:
    """Read preference pairs from an editworld dataset folder, a pairs ``.jsonl`` or an official ``.json``."""
    path = pair_file(path)
    if not path.exists():
        raise DataError(path, "pair data not found")
    if path.suffix == ".jsonl":
        return load_editworld_pairs(path)
    if path.suffix == ".json":
        return load_official_pairs(path, image_root)
    raise DataError(path, "expected a dataset folder, a .jsonl (editworld pairs) or a .json (EditReward-Data) file")


def load_editworld_pairs(path: str | Path) -> list[PreferencePair]:
    """Pairs from an editworld ``pairs.jsonl``; image paths are relative to the file's folder."""
    path = Path(path)
    pairs = []
    for line, row in iter_jsonl(path, required=EDITWORLD_PAIR_FIELDS):
        instruction = _instruction(row["instruction"], path, line=line, field="instruction")
        scores = {}
        for name in ("preferred_scores", "rejected_scores"):
            scores[name] = _dim_scores(row[name], path, line, name)
        tie = row.get("tie", False)
        if not isinstance(tie, bool):
            raise DataError(path, f"expected true/false, got {tie!r}", line=line, field="tie")
        images = {}
        for name in ("source", "preferred", "rejected"):
            if not isinstance(row[name], str) or not row[name]:
                raise DataError(path, f"expected an image path, got {row[name]!r}", line=line, field=name)
            images[name] = str(resolve_path(path.parent, row[name]))
        pairs.append(PreferencePair(
            source=images["source"], instruction=instruction, preferred=images["preferred"],
            rejected=images["rejected"], preferred_scores=scores["preferred_scores"],
            rejected_scores=scores["rejected_scores"], tie=tie,
            group=str(row.get("group_id", images["source"] + "\0" + instruction)), origin=f"{path}:{line}",
        ))
    if not pairs:
        raise DataError(path, "no pairs in this file")
    return pairs


def load_official_pairs(path: str | Path, image_root: str | Path | None = None) -> list[PreferencePair]:
    """Pairs from the official EditReward-Data JSON layout (``path1`` is always the preferred image)."""
    path = Path(path)
    try:
        rows = json.loads(path.read_text())
    except FileNotFoundError as err:
        raise DataError(path, "pair file not found") from err
    except json.JSONDecodeError as err:
        raise DataError(path, f"malformed JSON ({err.msg})", line=err.lineno) from err
    if not isinstance(rows, list):
        raise DataError(path, f"expected a JSON list of pairs, got {type(rows).__name__}")
    root = Path(image_root) if image_root is not None else path.parent
    pairs = []
    for i, row in enumerate(rows):
        where = f"{path}[{i}]"
        if not isinstance(row, dict):
            raise DataError(where, f"expected a JSON object, got {type(row).__name__}")
        for name in OFFICIAL_PAIR_FIELDS:
            if name not in row:
                raise DataError(where, "missing required field", field=name)
        instruction = _instruction(row["prompt"], where, field="prompt")
        images = {}
        for name in ("path_src", "path1", "path2"):
            if not isinstance(row[name], str) or not row[name]:
                raise DataError(where, f"expected an image path, got {row[name]!r}", field=name)
            images[name] = str(resolve_path(root, row[name]))
        s1 = _official_scores(row, "model1", where)
        s2 = _official_scores(row, "model2", where)
        tie = row.get("tie_case")
        if tie is None:
            tie = sum(s1) == sum(s2)
        elif not isinstance(tie, bool):
            raise DataError(where, f"expected true/false, got {tie!r}", field="tie_case")
        pairs.append(PreferencePair(
            source=images["path_src"], instruction=instruction, preferred=images["path1"],
            rejected=images["path2"], preferred_scores=s1, rejected_scores=s2, tie=tie,
            group=images["path_src"] + "\0" + instruction, origin=where,
        ))
    if not pairs:
        raise DataError(path, "no pairs in this file")
    return pairs


def _instruction(value: Any, where: str | Path, *, line: int | None = None, field: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise DataError(where, f"instruction must be a non-empty string, got {value!r}", line=line, field=field)
    return value


def _dim_scores(value: Any, path: Path, line: int, field: str) -> tuple[float, ...]:
    if not isinstance(value, dict):
        raise DataError(path, f"expected {{dimension: score}}, got {value!r}", line=line, field=field)
    out = []
    for dim in DIMENSIONS:
        v = value.get(dim)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise DataError(path, f"dimension {dim!r}: expected a finite number, got {v!r}", line=line, field=field)
        out.append(float(v))
    return tuple(out)


def _official_scores(row: dict[str, Any], model: str, where: str) -> tuple[float, ...]:
    out = []
    for d in (1, 2):
        name = f"{model}_dim{d}_score"
        v = row.get(name)
        if v is None and d == 2:
            # Benchmark-style rows carry one dimension only; repeat it so both heads see a consistent target.
            v = row.get(f"{model}_dim1_score")
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise DataError(where, f"expected a finite number, got {v!r}", field=name)
        out.append(float(v))
    return tuple(out)


# ---- ties, subsets and splits ----------------------------------------------------------------------

def training_samples(pairs: Sequence[PreferencePair], tie_disentangle: bool) -> list[PreferencePair]:
    """Turn comparisons into training samples (winner first).

    Non-tied pairs are kept. With ``tie_disentangle`` a tie whose dimensions disagree becomes two samples
    with opposite labels (paper eq. 6); every other tie carries no ranking signal and is dropped.
    """
    out = []
    for p in pairs:
        if not p.tie:
            out.append(p)
        elif tie_disentangle and p.disentanglable:
            out.extend([p, p.swapped()])
    return out


def split_by_group(pairs: Sequence[PreferencePair], val_fraction: float, seed: int
                   ) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """Hold out ``val_fraction`` of the groups (never part of a group) — a stable, seeded hash split."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    train, val = [], []
    for p in pairs:
        h = hashlib.sha256(f"{seed}\0{p.group}".encode()).digest()
        (val if int.from_bytes(h[:8], "big") / 2**64 < val_fraction else train).append(p)
    return train, val


def subsample(pairs: Sequence[PreferencePair], max_pairs: int | None, seed: int) -> list[PreferencePair]:
    """A seeded random subset of at most ``max_pairs`` pairs (data-size ablation), order kept."""
    if max_pairs is None or max_pairs >= len(pairs):
        return list(pairs)
    keep = sorted(random.Random(seed).sample(range(len(pairs)), max_pairs))
    return [pairs[i] for i in keep]


# ---- dataset and collate ---------------------------------------------------------------------------

class PairDataset:
    """Map-style dataset of preference pairs whose images are decoded on first use and kept in memory.

    Item ``i`` is a dict with PIL images ``source, preferred, rejected``, the ``instruction`` and the
    per-dimension scores; a missing or undecodable image is a DataError naming the pair's origin.
    """

    def __init__(self, pairs: Sequence[PreferencePair], cache_images: bool = True) -> None:
        self.pairs = list(pairs)
        self.cache_images = cache_images
        self._cache: dict[str, Any] = {}

    def __len__(self) -> int:
        return len(self.pairs)

    def _image(self, path: str, pair: PreferencePair, field: str):
        im = self._cache.get(path)
        if im is None:
            file, _, line = pair.origin.rpartition(":")
            im = load_image(path, manifest=file if line.isdigit() else pair.origin,
                            line=int(line) if line.isdigit() else None, field=field)
            if self.cache_images:
                self._cache[path] = im
        return im

    def __getitem__(self, i: int) -> dict[str, Any]:
        p = self.pairs[i]
        return {
            "source": self._image(p.source, p, "source"),
            "instruction": p.instruction,
            "preferred": self._image(p.preferred, p, "preferred"),
            "rejected": self._image(p.rejected, p, "rejected"),
            "preferred_scores": p.preferred_scores,
            "rejected_scores": p.rejected_scores,
        }


class PairCollator:
    """Collate B pairs into one model batch of 2B sequences: rows [0, B) are winners, [B, 2B) losers.

    ``builder`` is a ``reward.model.inputs.RewardInputBuilder`` (``builder(sources, instructions, editeds)``).
    Returns ``(model_inputs, scores)`` where ``scores`` is a float tensor (2B, D) of the human scores in
    the same row order (used by the point-wise loss).
    """

    def __init__(self, builder: Any) -> None:
        self.builder = builder

    def __call__(self, items: list[dict[str, Any]]):
        import torch

        sources = [it["source"] for it in items]
        instructions = [it["instruction"] for it in items]
        editeds = [it["preferred"] for it in items] + [it["rejected"] for it in items]
        batch = self.builder(sources + sources, instructions + instructions, editeds)
        scores = torch.tensor([it["preferred_scores"] for it in items] + [it["rejected_scores"] for it in items],
                              dtype=torch.float32)
        return batch, scores


class GroupDataset:
    """Training samples grouped by (source, instruction): item ``i`` is one group's distinct edited images and
    every training pair among them, so that each candidate is forwarded once however many pairs it is in
    (InstructGPT's "all K-choose-2 comparisons of a prompt as one batch element")."""

    def __init__(self, samples: Sequence[PreferencePair], cache_images: bool = True) -> None:
        self.images = PairDataset(samples, cache_images)  # decoding and its error messages
        groups: dict[tuple[str, str, str], dict[str, Any]] = {}
        for k, p in enumerate(samples):
            # keyed by source and instruction too: group ids of two datasets (e.g. "g000001") can coincide
            g = groups.setdefault((p.group, p.source, p.instruction),
                                  {"first": k, "index": {}, "refs": [], "scores": [], "pairs": []})
            for path, scores, field in ((p.preferred, p.preferred_scores, "preferred"),
                                        (p.rejected, p.rejected_scores, "rejected")):
                if path not in g["index"]:
                    g["index"][path] = len(g["scores"])
                    g["refs"].append((path, k, field))  # where the image first appears, for error messages
                    g["scores"].append(scores)
            g["pairs"].append((g["index"][p.preferred], g["index"][p.rejected]))
        self.groups = list(groups.values())
        self.samples = list(samples)

    def __len__(self) -> int:
        return len(self.groups)

    def __getitem__(self, i: int) -> dict[str, Any]:
        g = self.groups[i]
        first = self.samples[g["first"]]
        editeds = [self.images._image(path, self.samples[k], field) for path, k, field in g["refs"]]
        return {"source": self.images._image(first.source, first, "source"), "instruction": first.instruction,
                "editeds": editeds, "scores": g["scores"], "pairs": g["pairs"]}


class GroupCollator:
    """Collate groups into one batch of all their candidates (N sequences); returns ``(model_inputs, scores (N, D),
    pairs (P, 2))`` where each row of ``pairs`` is (winner row, loser row) into the batch."""

    def __init__(self, builder: Any) -> None:
        self.builder = builder

    def __call__(self, items: list[dict[str, Any]]):
        import torch

        sources, instructions, editeds, scores, pairs = [], [], [], [], []
        for it in items:
            offset = len(editeds)
            n = len(it["editeds"])
            sources += [it["source"]] * n
            instructions += [it["instruction"]] * n
            editeds += it["editeds"]
            scores += it["scores"]
            pairs += [(offset + w, offset + l) for w, l in it["pairs"]]
        batch = self.builder(sources, instructions, editeds)
        return batch, torch.tensor(scores, dtype=torch.float32), torch.tensor(pairs, dtype=torch.long)


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The shuffled order of ``n`` samples in ``epoch`` — a pure function of (seed, epoch), so a resumed run skips exactly."""
    import torch

    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g).tolist()


__all__ = [
    "DIMENSIONS", "PreferencePair", "pair_file", "load_pairs", "load_editworld_pairs", "load_official_pairs",
    "training_samples", "split_by_group", "subsample", "PairDataset", "PairCollator", "GroupDataset", "GroupCollator",
    "epoch_order",
]
