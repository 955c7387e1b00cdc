"""MCUNetV2's evolutionary search (App. B), seeded, cached and resumable.

The population starts as ``population`` random feasible candidates; each iteration keeps the
``parents`` best (distinct networks) and adds ``n_mutate`` mutants (a random parent, each gene
resampled with probability ``mutate_prob``) and ``n_crossover`` crossovers (two random parents)
— infeasible proposals are dropped and replaced. The objective (higher is better; by default
the network's MACs, TinyNAS's proxy) is computed in this process, once per network, and only
for feasible ones; feasibility (:func:`tinypatch.nas.evaluate.evaluate`) runs on ``executor``
(anything with ``map(fn, items)`` in order: the builtin in-process one by default, a
:class:`~tinypatch.nas.executors.RayExecutor`, a process pool). Proposals come from one
``random.Random(seed)`` and are accepted in order, so the executor never changes the result.

Evaluations are cached by spec fingerprint. With ``resume=FILE`` the state (settings, RNG,
population, every evaluation and score, per-iteration history) is written there atomically
after the initial population and after every iteration; a later call with the same file and
settings continues where it stopped (``iterations`` may grow) and ends where an uninterrupted
run would.
"""

from __future__ import annotations

import json
import math
import os
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import MISSING, dataclass, fields
from functools import partial
from typing import Any, Protocol

from tinypatch.errors import BudgetError, UsageError
from tinypatch.frontends.spec import NetSpec
from tinypatch.nas.evaluate import Constraints, Evaluation, evaluate
from tinypatch.nas.space import Genome, SearchSpace
from tinypatch.safeio import write_text

FORMAT = "tinypatch-search"
Objective = Callable[[NetSpec], float]


class Executor(Protocol):
    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], /) -> Iterable[Any]: ...


class _InProcess:
    def map(self, fn: Callable[[Any], Any], items: Iterable[Any], /) -> Iterable[Any]:
        return map(fn, items)


@dataclass(frozen=True)
class Candidate:
    genome: Genome
    spec: NetSpec
    evaluation: Evaluation
    score: float


@dataclass
class SearchResult:
    """The best candidate, the final population, every evaluation and the history."""

    space: SearchSpace
    constraints: Constraints
    settings: dict[str, Any]
    best: Candidate
    population: list[Candidate]
    evaluations: dict[str, Evaluation]  # by fingerprint, feasible or not
    scores: dict[str, float]  # objective of every feasible network evaluated
    history: list[dict[str, Any]]  # per iteration (0: the initial population)
    proposals: int  # candidates proposed (cache hits included)
    seconds: float  # this call's run time (a resumed run: the time since resuming)

    def to_dict(self) -> dict[str, Any]:
        b = self.best
        return {"settings": self.settings, "best": {"fingerprint": b.spec.fingerprint(), "score": b.score,
                                                    "genome": list(b.genome), "evaluation": b.evaluation.to_dict(),
                                                    "spec": b.spec.to_dict()},
                "history": self.history, "evaluated": len(self.evaluations),
                "feasible": len(self.scores), "proposals": self.proposals, "seconds": self.seconds}

    def pareto(self) -> list[tuple[int, float, str]]:
        """(SRAM peak, objective, fingerprint) of the feasible networks no other beats on both."""
        pts = sorted(((self.evaluations[fp].peak, -s, fp) for fp, s in self.scores.items()))
        front, best = [], None
        for peak, neg, fp in pts:
            if best is None or -neg > best:
                front.append((peak, -neg, fp))
                best = -neg
        return front


def evolve(space: SearchSpace, constraints: Constraints, objective: Objective | None = None, *,
           population: int = 100, parents: int = 20, n_mutate: int = 50, n_crossover: int = 50,
           mutate_prob: float = 0.1, iterations: int = 30, seed: int = 0, progress: bool = True,
           resume: str | os.PathLike[str] | None = None, executor: Executor | None = None,
           max_tries: int = 100) -> SearchResult:
    """Evolutionary search of ``space`` under ``constraints`` (module docstring).

    ``objective(spec)`` scores a feasible network (higher is better; None: its MACs).
    ``max_tries`` bounds the proposals per wanted feasible candidate before BudgetError.
    """
    for name, v, low in (("population", population, 1), ("parents", parents, 1), ("n_mutate", n_mutate, 0),
                         ("n_crossover", n_crossover, 0), ("iterations", iterations, 0), ("max_tries", max_tries, 1)):
        if not isinstance(v, int) or isinstance(v, bool) or v < low:
            raise UsageError(f"{name} must be an integer >= {low}, got {v!r}")
    if not isinstance(mutate_prob, (int, float)) or isinstance(mutate_prob, bool) or not 0 <= mutate_prob <= 1:
        raise UsageError(f"mutate_prob must be in [0, 1], got {mutate_prob!r}")
    if n_crossover and parents < 2:
        raise UsageError("crossover needs at least 2 parents")
    settings = {"format": FORMAT, "space": space.to_dict(), "constraints": constraints.to_dict(),
                "objective": "macs" if objective is None else getattr(objective, "__name__", repr(objective)),
                "population": population, "parents": parents, "n_mutate": n_mutate, "n_crossover": n_crossover,
                "mutate_prob": mutate_prob, "seed": seed, "max_tries": max_tries}
    run = _Run(space, constraints, objective, executor or _InProcess(), max_tries)
    start = time.perf_counter()
    if resume is not None and not os.path.isdir(os.path.dirname(os.path.abspath(resume))):
        raise UsageError(f"cannot write the search state {os.fspath(resume)}: its folder does not exist")
    state = _load(resume, settings) if resume is not None and os.path.exists(resume) else None
    rng = random.Random(seed)
    if state is not None:
        rng.setstate(_rng_state(state["rng"]))
        run.restore(state)
        pop = [run.candidate(space.check(g)) for g in state["genomes"]]
        history: list[dict[str, Any]] = state["history"]
    else:
        pop = run.fill(lambda: space.sample(rng), population)
        history = [_summary(0, pop)]
        _save(resume, settings, rng, pop, run, history)
    done = len(history) - 1
    with _ProgressBar(progress, iterations, done) as advance:
        for it in range(done + 1, iterations + 1):
            top = _select(pop, parents)
            mutants = run.fill(lambda: space.mutate(rng.choice(top).genome, rng, mutate_prob), n_mutate)
            crosses = run.fill(lambda: space.crossover(*(c.genome for c in _pair(top, rng)), rng), n_crossover)
            pop = top + mutants + crosses
            history.append(_summary(it, pop))
            _save(resume, settings, rng, pop, run, history)
            advance(history[-1])
    pop = _select(pop, len(pop))
    return SearchResult(space, constraints, {**settings, "iterations": iterations}, pop[0], pop, dict(run.cache),
                        dict(run.scores), history, run.proposals, time.perf_counter() - start)


class _Run:
    """Evaluations (cached by fingerprint) and objective scores of one search."""

    def __init__(self, space: SearchSpace, constraints: Constraints, objective: Objective | None,
                 executor: Executor, max_tries: int) -> None:
        self.space, self.constraints, self.objective = space, constraints, objective
        self.executor, self.max_tries = executor, max_tries
        self.cache: dict[str, Evaluation] = {}
        self.scores: dict[str, float] = {}
        self.proposals = 0

    def restore(self, state: dict[str, Any]) -> None:
        self.cache = {fp: Evaluation(**e) for fp, e in state["evaluations"].items()}
        self.scores = {fp: float(s) for fp, s in state["scores"].items()}
        self.proposals = state["proposals"]

    def evaluate(self, genomes: Sequence[Genome], count: bool = True) -> list[Candidate | None]:
        specs = [self.space.to_spec(g) for g in genomes]
        fps = [s.fingerprint() for s in specs]
        todo = {fp: s for fp, s in zip(fps, specs) if fp not in self.cache}
        for fp, ev in zip(todo, self.executor.map(partial(evaluate, constraints=self.constraints), todo.values()),
                          strict=True):
            self.cache[fp] = ev
        out: list[Candidate | None] = []
        for g, spec, fp in zip(genomes, specs, fps):
            ev = self.cache[fp]
            if not ev.feasible:
                out.append(None)
                continue
            if ev.fingerprint not in self.scores:
                self.scores[ev.fingerprint] = _score(ev.macs if self.objective is None else self.objective(spec),
                                                     ev.fingerprint)
            out.append(Candidate(g, spec, ev, self.scores[ev.fingerprint]))
        self.proposals += len(genomes) if count else 0
        return out

    def candidate(self, genome: Genome) -> Candidate:
        c = self.evaluate([genome], count=False)[0]
        assert c is not None, "a resumed population holds only feasible candidates"
        return c

    def fill(self, propose: Callable[[], Genome], count: int) -> list[Candidate]:
        """``count`` feasible candidates from ``propose``, in proposal order (batches of what is missing).

        BudgetError after ``max_tries`` proposals per wanted candidate, or after 10 per wanted
        candidate (at least 100) when none at all was feasible; it says what failed."""
        out: list[Candidate] = []
        tries = 0
        failed: list[Evaluation] = []
        while len(out) < count:
            if tries >= self.max_tries * count or (not out and tries >= max(10 * count, 100)):
                raise BudgetError(f"only {len(out)} of {count} wanted candidates were feasible after {tries} "
                                  f"proposals ({_why(failed)}): loosen the constraints or change the space",
                                  min((e.peak for e in failed if e.peak), default=None))
            batch = [propose() for _ in range(count - len(out))]
            tries += len(batch)
            for g, c in zip(batch, self.evaluate(batch)):
                if c is None:
                    failed.append(self.cache[self.space.to_spec(g).fingerprint()])
                else:
                    out.append(c)
        return out


def _why(failed: list[Evaluation]) -> str:
    """'120 over the flash limit, 80 over the SRAM limit (least 40,960 B)'."""
    flash = [e for e in failed if e.reason.startswith("flash")]
    sram = [e for e in failed if e.reason.startswith("SRAM")]
    slow = [e for e in failed if e.reason.startswith("latency")]
    macs = len(failed) - len(flash) - len(sram) - len(slow)
    parts = [f"{len(flash)} over the flash limit (least {min(e.flash for e in flash):,} B)"] if flash else []
    if sram:
        parts.append(f"{len(sram)} over the SRAM limit (least {min(e.peak for e in sram):,} B)")
    if macs:
        parts.append(f"{macs} over the MAC limit")
    if slow:
        parts.append(f"{len(slow)} over the latency limit (least {min(e.insns for e in slow):,} instructions)")
    return ", ".join(parts) or "none evaluated"


def _score(value: Any, fingerprint: str) -> float:
    """The objective's value as a finite float (numpy and torch scalars included)."""
    try:
        score = float(value)
    except (TypeError, ValueError):
        score = math.nan
    if not math.isfinite(score) or isinstance(value, bool):
        raise UsageError(f"the objective must return a finite number, got {value!r} for network {fingerprint}")
    return score


def _pair(top: list[Candidate], rng: random.Random) -> list[Candidate]:
    """Two distinct parents (the only one twice when the population holds one network)."""
    return rng.sample(top, 2) if len(top) > 1 else [top[0], top[0]]


def _select(pop: list[Candidate], k: int) -> list[Candidate]:
    """The ``k`` best distinct networks (score, then fewer schedule MACs, then fingerprint)."""
    seen: set[str] = set()
    out = []
    for c in sorted(pop, key=lambda c: (-c.score, c.evaluation.schedule_macs, c.evaluation.fingerprint)):
        if c.evaluation.fingerprint not in seen:
            seen.add(c.evaluation.fingerprint)
            out.append(c)
    return out[:k]


def _summary(iteration: int, pop: list[Candidate]) -> dict[str, Any]:
    best = _select(pop, 1)[0]
    e = best.evaluation
    return {"iteration": iteration, "best_score": best.score, "best": e.fingerprint, "macs": e.macs,
            "peak": e.peak, "flash": e.flash, "schedule": e.schedule, "insns": e.insns}


def _rng_state(data: list[Any]) -> tuple[Any, ...]:
    version, internal, gauss = data
    return version, tuple(internal), gauss


def _save(path: str | os.PathLike[str] | None, settings: dict[str, Any], rng: random.Random,
          pop: list[Candidate], run: _Run, history: list[dict[str, Any]]) -> None:
    if path is None:
        return
    version, internal, gauss = rng.getstate()
    state = {**settings, "rng": [version, list(internal), gauss], "genomes": [list(c.genome) for c in pop],
             "history": history, "proposals": run.proposals,
             "evaluations": {fp: e.to_dict() for fp, e in run.cache.items()}, "scores": run.scores}
    write_text(path, json.dumps(state) + "\n")


_BEFORE = {"stream": False}  # constraints whose default differs from what searches did before they existed


def _load(path: str | os.PathLike[str], settings: dict[str, Any]) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            state = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UsageError(f"cannot resume from {os.fspath(path)}: not a readable JSON file ({exc})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise UsageError(f"cannot resume from {os.fspath(path)}: not a tinypatch search file")
    if isinstance(state.get("constraints"), dict):  # written before a constraint existed: it had the default,
        state["constraints"] = {**{f.name: f.default for f in fields(Constraints) if f.default is not MISSING},
                                **_BEFORE, **state["constraints"]}  # or what the search did before it existed
    diff = [k for k, v in settings.items() if state.get(k) != json.loads(json.dumps(v))]
    if diff:
        raise UsageError(f"cannot resume from {os.fspath(path)}: it was written with other settings "
                         f"({', '.join(diff)})")
    try:
        return {**state, "rng": state["rng"], "genomes": state["genomes"], "history": state["history"],
                "proposals": int(state["proposals"]), "evaluations": dict(state["evaluations"]),
                "scores": dict(state["scores"])}
    except (KeyError, TypeError, ValueError) as exc:
        raise UsageError(f"cannot resume from {os.fspath(path)}: incomplete state ({exc})") from None


class _ProgressBar:
    """A rich progress bar over the iterations (a no-op unless ``enabled``)."""

    def __init__(self, enabled: bool, total: int, done: int) -> None:
        self.enabled, self.total, self.done = enabled, total, done

    def __enter__(self) -> Callable[[dict[str, Any]], None]:
        if not self.enabled:
            return lambda summary: None
        from rich.progress import Progress

        self.progress = Progress(*Progress.get_default_columns(), "{task.fields[best]}", transient=True)
        self.progress.__enter__()
        task = self.progress.add_task("evolution", total=self.total, completed=self.done, best="")

        def advance(s: dict[str, Any]) -> None:
            self.progress.update(task, advance=1, best=f"best {s['best_score']:.4g} (peak {s['peak']} B)")
        return advance

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.progress.__exit__(*exc)
