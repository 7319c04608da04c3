"""Ours against the simple rules in one cell (shape x sampling): the two verdicts the bench prints.

* **Old** (rounds 4-6, unchanged): misses and false pages only, each against the best rule on
  that count: '+' fewer, '=' as many, '-' more. Most cells are 10/10 (or 48/48) with 0 false
  pages for every contender, so "strictly better" cannot happen there whatever the delays.
* **Strict** (round 7): ours against each rule separately. Worse if it misses more or pages
  falsely more than that rule; better if it is not worse and misses fewer, pages falsely less,
  or has a median delay shorter by more than one sampling step (the rules' bucket: 60 s raw and
  at 1 min, 300 s at 5 min; a delay gap smaller than a step is one evaluation's luck). The cell
  is '+' when ours is better than both rules, '-' when worse than either, '=' otherwise. A
  non-event (must not page) has only false pages. Both verdicts are printed side by side, so the
  strict one cannot be mistaken for a relaxed old one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Result:
    hits: int  # events paged within the hour (0 for a non-event)
    false: int  # false pages
    median_delay: float | None  # seconds; None without hits


def _sign(ours: float, best: float) -> str:
    """'+' when ours is lower (fewer misses or false pages), '-' when higher."""
    return "+" if ours < best else "=" if ours == best else "-"


def old_verdict(ours: Result, rules: list[Result], runs: int, event: bool) -> str:
    """Misses and false pages against the best rule on each: 'misses =, false +'."""
    marks = []
    if event:
        marks.append(f"misses {_sign(runs - ours.hits, min(runs - r.hits for r in rules))}")
    marks.append(f"false {_sign(ours.false, min(r.false for r in rules))}")
    return ", ".join(marks)


def against(ours: Result, rule: Result, step: float, event: bool) -> str:
    """'+' strictly better than this rule, '-' worse, '=' neither (module docstring)."""
    if ours.false > rule.false or (event and ours.hits < rule.hits):
        return "-"
    if ours.false < rule.false or (event and ours.hits > rule.hits):
        return "+"
    if event and ours.median_delay is not None and rule.median_delay is not None:
        return "+" if ours.median_delay < rule.median_delay - step else "="
    return "="


def strict_verdict(ours: Result, rules: Mapping[str, Result], step: float, event: bool) -> str:
    """'+' better than every rule, '-' worse than any, '=' otherwise."""
    marks = [against(ours, rule, step, event) for rule in rules.values()]
    return "-" if "-" in marks else "+" if all(m == "+" for m in marks) else "="


def tally(verdicts: list[str]) -> str:
    """'better 3, same 5, worse 1' for a column of strict verdicts."""
    return ", ".join(f"{word} {verdicts.count(mark)}" for mark, word in
                     (("+", "better"), ("=", "same"), ("-", "worse")))  # fmt: skip


def old_tally(verdicts: list[str]) -> str:
    """The old verdicts counted: better on any count and worse on none, same, worse on any."""
    better = sum(1 for v in verdicts if "+" in v and "-" not in v)
    worse = sum(1 for v in verdicts if "-" in v)
    return f"better {better}, same {len(verdicts) - better - worse}, worse {worse}"
