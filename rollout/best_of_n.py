"""Best-of-N sampling: draw N edits of one (source, instruction) with the SDE sampler, score them as one group with
the reward model, keep the top-ranked one.

Selection rules (``choose``), on the reward client's ``ScoredEdit`` (``score`` = aggregated mu, ``score_sigma`` =
its aggregated sigma, ``reward.train.loss.aggregate``):

- ``aggregate``: the highest aggregated mu;
- ``lcb``: the highest lower confidence bound ``score - k * score_sigma`` (uncertainty-aware; k = 0 is ``aggregate``).

Failed items (``error`` set / NaN score) are ranked last and never chosen while another candidate is scored.

``sweep`` measures best-of-N on held-out editworld tasks against the pixel oracle: sample max(N) candidates per
task once, score them once, and for each N choose among the first N candidates; beside it the expected oracle
score of a random choice among the same N and the oracle-best candidate (upper bound).

Pure logic only: no argument parsing and no file layout (``rollout.best_of_n_commands`` does that). The reward
client is anything with ``score_groups`` (``reward.serve.client.make_reward_client``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

RULES = ("aggregate", "lcb")


# ---------------------------------------------------------------------------------------------- selection rules
def _get(scored: Any, name: str) -> Any:
    return scored.get(name) if isinstance(scored, dict) else getattr(scored, name, None)


def rule_key(scored: Any, rule: str = "aggregate", k: float = 1.0) -> float:
    """The number ``rule`` ranks by (higher is better); NaN for a failed item."""
    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; choose from {', '.join(RULES)}")
    if _get(scored, "error") is not None:
        return math.nan
    mu = _get(scored, "score")
    mu = math.nan if mu is None else float(mu)
    if rule == "aggregate":
        return mu
    sigma = _get(scored, "score_sigma")
    sigma = math.nan if sigma is None else float(sigma)
    return mu - float(k) * sigma


def ranking(scores: Sequence[Any], rule: str = "aggregate", k: float = 1.0) -> list[int]:
    """Candidate indices best first under ``rule``; ties keep the sampling order, failed items go last."""
    keys = [rule_key(s, rule, k) for s in scores]
    return sorted(range(len(keys)), key=lambda i: (math.isnan(keys[i]), -keys[i] if not math.isnan(keys[i]) else 0.0, i))


def choose(scores: Sequence[Any], rule: str = "aggregate", k: float = 1.0) -> int:
    """Index of the candidate ``rule`` selects (see the module docstring); ValueError if none could be scored."""
    if not scores:
        raise ValueError("choose: no candidates")
    order = ranking(scores, rule, k)
    if math.isnan(rule_key(scores[order[0]], rule, k)):
        errors = {str(_get(s, "error")) for s in scores}
        raise ValueError(f"choose: none of the {len(scores)} candidates could be scored ({'; '.join(sorted(errors))})")
    return order[0]


# ---------------------------------------------------------------------------------------------- sampling
def _generator(editor: Any, seed: int) -> Any:
    import torch

    device = getattr(editor, "device", torch.device("cpu"))
    return torch.Generator(device=device).manual_seed(int(seed))


def sample_groups(editor: Any, sources: Sequence[Any], instructions: Sequence[str], n: int, num_steps: int = 10,
                  noise_level: float = 0.7, guidance: float | None = None, seed: int = 0,
                  batch_size: int = 32, sde_window: int = 0) -> list[list[Any]]:
    """``n`` samples (PIL images) for each (source, instruction) row; about ``batch_size`` images a call.

    Candidates differ in their initial noise (``noise_level`` 0: ODE samples, as the editor is evaluated) and, with
    ``noise_level`` > 0, in every SDE step — or, with
    ``sde_window`` > 0, in a window of that many steps drawn per call as the RL sampler draws it
    (``rollout.sampling.sde_window``). The result is deterministic for a seed and a batch size.
    """
    import torch

    from rollout.sampling import sde_window as draw_window

    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if len(sources) != len(instructions):
        raise ValueError(f"{len(sources)} sources but {len(instructions)} instructions")
    g = _generator(editor, seed)
    rows_per_call = max(1, int(batch_size) // n)
    out: list[list[Any]] = []
    with torch.no_grad():
        for start in range(0, len(sources), rows_per_call):
            src = list(sources[start:start + rows_per_call])
            ins = list(instructions[start:start + rows_per_call])
            cond = editor.prepare(src, ins)
            # a group larger than the batch is sampled in slices of the repeated conditioning
            group = cond.repeat_interleave(n)
            images: list[Any] = []
            step = max(int(batch_size), 1)
            for s in range(0, group.batch_size, step):
                rows = list(range(s, min(s + step, group.batch_size)))
                part = group if len(rows) == group.batch_size else group.index(rows)
                window = draw_window(num_steps, sde_window, g) if noise_level > 0 else None
                extra = {} if window is None else {"sde_steps": window}
                images.extend(editor.sample(part, num_steps=num_steps, noise_level=noise_level, guidance=guidance,
                                            generator=g, **extra).images)
            out.extend(images[i * n:(i + 1) * n] for i in range(len(src)))
    return out


# ---------------------------------------------------------------------------------------------- one request
@dataclass
class BestOfN:
    """The candidates of one (source, instruction), their reward scores and the choice."""

    source: Any
    instruction: str
    images: list  # PIL images in sampling order
    scores: list  # ScoredEdit per image
    rule: str
    k: float
    chosen: int  # index into images
    order: list[int] = field(default_factory=list)  # indices best first under ``rule``

    @property
    def image(self) -> Any:
        return self.images[self.chosen]

    def rank_of(self, index: int) -> int:
        """1-based rank of candidate ``index`` under the selection rule."""
        return self.order.index(index) + 1

    def rows(self) -> list[dict[str, Any]]:
        """One JSON-ready dict per candidate (sampling order): mu, sigma, aggregate, lcb, rule key and rank."""
        out = []
        for i, s in enumerate(self.scores):
            out.append({
                "index": i,
                "mu": {d: _num(v) for d, v in (_get(s, "mu") or {}).items()},
                "sigma": {d: _num(v) for d, v in (_get(s, "sigma") or {}).items()},
                "aggregate": _num(_get(s, "score")),
                "aggregate_sigma": _num(_get(s, "score_sigma")),
                "lcb": _num(rule_key(s, "lcb", self.k)),
                "selection_score": _num(rule_key(s, self.rule, self.k)),
                "rank": self.rank_of(i),
                "chosen": i == self.chosen,
                "error": _get(s, "error"),
            })
        return out


def _num(x: Any) -> float | None:
    """A float for JSON (None for NaN / missing)."""
    if x is None:
        return None
    x = float(x)
    return None if math.isnan(x) else x


def best_of_n(editor: Any, scorer: Any, source: Any, instruction: str, n: int, rule: str = "aggregate",
              k: float = 1.0, num_steps: int = 10, noise_level: float = 0.7, guidance: float | None = None,
              seed: int = 0, batch_size: int = 32) -> BestOfN:
    """Sample ``n`` edits of ``source`` (PIL image or path) for ``instruction``, score them as one group through
    the reward client ``scorer`` (shared prefix) and choose one by ``rule``."""
    from PIL import Image

    if rule not in RULES:
        raise ValueError(f"unknown selection rule {rule!r}; choose from {', '.join(RULES)}")
    if not isinstance(source, Image.Image):
        with Image.open(source) as im:
            source = im.convert("RGB")
    images = sample_groups(editor, [source], [instruction], n, num_steps=num_steps, noise_level=noise_level,
                           guidance=guidance, seed=seed, batch_size=batch_size)[0]
    scores = scorer.score_groups([(source, instruction, images)])[0]
    order = ranking(scores, rule, k)
    chosen = choose(scores, rule, k)
    return BestOfN(source=source, instruction=instruction, images=images, scores=list(scores), rule=rule, k=float(k),
                   chosen=chosen, order=order)


# ---------------------------------------------------------------------------------------------- the sweep
@dataclass
class SweepTask:
    """What the sweep keeps of one held-out task: reward scores and oracle scores of each candidate."""

    instruction: str
    scores: list  # ScoredEdit per candidate (sampling order)
    oracle: list[dict[str, float]]  # oracle score per candidate


def _oracle_mean(o: dict[str, float]) -> float:
    return float(sum(o.values()) / len(o))


def _summary(values: list[dict[str, float]], dims: Sequence[str]) -> dict[str, float]:
    """Mean per dimension, the mean of the dimensions, and its standard error over tasks."""
    import numpy as np

    out = {d: float(np.mean([v[d] for v in values])) for d in dims}
    means = np.array([np.mean([v[d] for d in dims]) for v in values])
    out["mean"] = float(means.mean())
    out["se"] = float(means.std(ddof=1) / math.sqrt(len(means))) if len(means) > 1 else 0.0
    return out


def sweep_table(tasks: Sequence[SweepTask], ns: Sequence[int], k: float = 1.0,
                rules: Sequence[str] = RULES) -> dict[str, dict[str, dict[str, float]]]:
    """``{str(N): {method: {dim: mean oracle, "mean": .., "se": ..}}}`` from already scored candidates.

    Methods: each rule in ``rules`` (the reward model chooses among the first N candidates), ``random`` (the
    expected oracle score of a uniformly random choice among them) and ``oracle_best`` (the candidate the oracle
    itself ranks first: the upper bound).
    """
    from editworld import DIMENSIONS

    dims = list(DIMENSIONS)
    table: dict[str, dict[str, dict[str, float]]] = {}
    for n in ns:
        per: dict[str, list[dict[str, float]]] = {m: [] for m in (*rules, "random", "oracle_best")}
        for t in tasks:
            if len(t.oracle) < n:
                raise ValueError(f"N={n} but only {len(t.oracle)} candidates were sampled per task")
            oracle = t.oracle[:n]
            for rule in rules:
                per[rule].append(_picked(t, n, rule, k))
            per["random"].append(_random_pick(oracle))
            per["oracle_best"].append(max(oracle, key=_oracle_mean))
        table[str(n)] = {m: _summary(v, dims) for m, v in per.items()}
    return table


def pick_gains(tasks: Sequence[SweepTask], ns: Sequence[int], rule: str = "aggregate", k: float = 1.0,
               confidence: float = 0.95) -> dict[str, dict[str, float]]:
    """Does the reward's pick beat a random one? ``{str(N): {...}}`` on the mean of the oracle's dimensions, paired
    over tasks: ``gain`` (pick minus the random choice's expectation) with its Student-t interval ``ci_low`` /
    ``ci_high``, ``headroom`` (oracle best minus random) and ``recovered`` (gain / headroom, the share of what a
    perfect reward would add that this one adds)."""
    from editrl.stats import t_bounds

    out: dict[str, dict[str, float]] = {}
    for n in ns:
        gains, room = [], []
        for t in tasks:
            random = _oracle_mean(_random_pick(t.oracle[:n]))
            gains.append(_oracle_mean(_picked(t, n, rule, k)) - random)
            room.append(max(_oracle_mean(o) for o in t.oracle[:n]) - random)
        mean, low, high = t_bounds(gains, confidence)
        headroom = sum(room) / len(room)
        out[str(n)] = {"gain": mean, "ci_low": low, "ci_high": high, "headroom": headroom,
                       "recovered": mean / headroom if headroom > 0 else math.nan}
    return out


def _random_pick(oracle: Sequence[dict[str, float]]) -> dict[str, float]:
    """The expected oracle scores of a uniformly random choice among ``oracle``."""
    return {d: sum(o[d] for o in oracle) / len(oracle) for d in oracle[0]}


def _picked(task: SweepTask, n: int, rule: str, k: float) -> dict[str, float]:
    """The oracle scores of the candidate ``rule`` picks among the first ``n``; a random pick's expectation when
    none of them was scored."""
    try:
        return task.oracle[choose(task.scores[:n], rule, k)]
    except ValueError:
        return _random_pick(task.oracle[:n])


def pairwise_agreement(tasks: Sequence[SweepTask]) -> float:
    """Within-task share of candidate pairs the reward model orders like the oracle (mean of dimensions; ties of
    either skipped): how well the reward ranks samples of one editor."""
    agree = total = 0
    for t in tasks:
        for i in range(len(t.oracle)):
            for j in range(i + 1, len(t.oracle)):
                r = _get(t.scores[i], "score"), _get(t.scores[j], "score")
                if any(x is None or math.isnan(float(x)) for x in r):
                    continue
                dr = float(r[0]) - float(r[1])
                do = _oracle_mean(t.oracle[i]) - _oracle_mean(t.oracle[j])
                if dr == 0 or abs(do) < 1e-9:
                    continue
                total += 1
                agree += (dr > 0) == (do > 0)
    return agree / total if total else math.nan


def sweep(editor: Any, scorer: Any, num_tasks: int = 64, ns: Sequence[int] = (1, 2, 4, 8, 16), k: float = 1.0,
          num_steps: int = 10, noise_level: float = 0.7, guidance: float | None = None, seed: int = 0,
          task_seed: int | None = None, size: int = 32, batch_size: int = 32, tasks_per_call: int | None = None,
          progress: bool = True, rules: Sequence[str] = RULES,
          on_task: Callable[[int, Any, list], None] | None = None) -> dict[str, Any]:
    """Best-of-N on held-out editworld tasks (``editworld.tasks.HELD_OUT_SEED`` unless ``task_seed``).

    Returns ``{"results": sweep_table(...), "gains": pick_gains(...) of the first rule, "pairwise_agreement": ..,
    "tasks": [SweepTask ...], ...}``.
    ``on_task(i, task, images)`` is called with each task's candidates (e.g. to save a few of them).
    """
    from tqdm.auto import tqdm

    from editworld.oracle import oracle_scores
    from editworld.tasks import HELD_OUT_SEED, sample_tasks

    ns = sorted({int(n) for n in ns})
    if not ns or ns[0] < 1:
        raise ValueError(f"ns must be positive integers, got {ns}")
    if noise_level < 0:
        raise ValueError(f"noise_level must be >= 0 (0: ODE candidates, differing in their initial noise), got "
                         f"{noise_level}")
    max_n = ns[-1]
    task_seed = HELD_OUT_SEED if task_seed is None else int(task_seed)
    tasks = sample_tasks(int(num_tasks), task_seed, size=size)
    per_call = tasks_per_call or max(1, int(batch_size) // max_n)
    done: list[SweepTask] = []
    bar = tqdm(total=len(tasks), desc=f"best-of-{max_n} sweep", unit="task", disable=not progress)
    for start in range(0, len(tasks), per_call):
        chunk = tasks[start:start + per_call]
        sources = [t.source_image(size) for t in chunk]
        groups = sample_groups(editor, sources, [t.instruction for t in chunk], max_n, num_steps=num_steps,
                               noise_level=noise_level, guidance=guidance, seed=seed + start, batch_size=batch_size)
        scored = scorer.score_groups([(s, t.instruction, imgs) for s, t, imgs in zip(sources, chunk, groups)])
        for j, (task, images, scores) in enumerate(zip(chunk, groups, scored)):
            oracle = [oracle_scores(task, im) for im in images]
            done.append(SweepTask(instruction=task.instruction, scores=list(scores), oracle=oracle))
            if on_task is not None:
                on_task(start + j, task, images)
        bar.update(len(chunk))
    bar.close()
    return {"results": sweep_table(done, ns, k, rules), "gains": pick_gains(done, ns, rules[0], k),
            "pairwise_agreement": pairwise_agreement(done),
            "tasks": done, "ns": ns, "task_seed": task_seed, "num_tasks": len(tasks)}
