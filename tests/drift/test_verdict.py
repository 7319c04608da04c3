"""The bench's two verdicts (bench/drift/verdict.py): the old one and the strict one with delay."""

from __future__ import annotations

from bench.drift.verdict import Result, against, old_tally, old_verdict, strict_verdict, tally

RULES = {"ratio": Result(10, 0, 600.0), "fixed": Result(10, 2, 120.0)}


def test_the_old_verdict_compares_misses_and_false_pages_with_the_best_rule_on_each() -> None:
    rules = list(RULES.values())
    assert old_verdict(Result(10, 0, 240.0), rules, 10, event=True) == "misses =, false ="
    assert old_verdict(Result(9, 0, 60.0), rules, 10, event=True) == "misses -, false ="
    assert old_verdict(Result(10, 1, 60.0), rules, 10, event=True) == "misses =, false -"
    assert old_verdict(Result(0, 0, None), rules, 10, event=False) == "false ="


def test_a_shorter_median_delay_counts_only_beyond_one_sampling_step() -> None:
    ratio = RULES["ratio"]
    assert against(Result(10, 0, 480.0), ratio, 60.0, event=True) == "+"
    assert against(Result(10, 0, 540.0), ratio, 60.0, event=True) == "="  # one step: luck
    assert against(Result(10, 0, 540.0), ratio, 300.0, event=True) == "="
    assert against(Result(10, 0, 240.0), ratio, 300.0, event=True) == "+"


def test_worse_on_misses_or_false_pages_is_worse_whatever_the_delay() -> None:
    ratio = RULES["ratio"]
    assert against(Result(9, 0, 30.0), ratio, 60.0, event=True) == "-"
    assert against(Result(10, 1, 30.0), ratio, 60.0, event=True) == "-"
    # fewer misses is better even when slower; a rule that caught nothing has no delay
    assert against(Result(10, 0, 900.0), Result(4, 0, 300.0), 60.0, event=True) == "+"
    assert against(Result(10, 0, 900.0), Result(0, 0, None), 60.0, event=True) == "+"


def test_the_strict_verdict_needs_better_than_every_rule() -> None:
    # better than the fixed rule on false pages, than the ratio rule on delay
    assert strict_verdict(Result(10, 0, 240.0), RULES, 60.0, event=True) == "+"
    # as fast as the ratio rule within a step: only "=" against it
    assert strict_verdict(Result(10, 0, 570.0), RULES, 60.0, event=True) == "="
    # one false page more than the ratio rule: worse, even though faster than both
    assert strict_verdict(Result(10, 1, 60.0), RULES, 60.0, event=True) == "-"


def test_a_non_event_is_judged_on_false_pages_alone() -> None:
    rules = {"ratio": Result(0, 3, None), "fixed": Result(0, 1, None)}
    assert strict_verdict(Result(0, 0, None), rules, 300.0, event=False) == "+"
    assert strict_verdict(Result(0, 1, None), rules, 300.0, event=False) == "="
    assert strict_verdict(Result(0, 2, None), rules, 300.0, event=False) == "-"


def test_tallies_count_each_verdict_once() -> None:
    assert tally(["+", "=", "=", "-"]) == "better 1, same 2, worse 1"
    old = ["misses =, false +", "misses =, false =", "misses +, false -", "false +"]
    assert old_tally(old) == "better 2, same 1, worse 1"
