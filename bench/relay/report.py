"""The Markdown summary of a run: the issue's targets first, then one table per scenario."""

from __future__ import annotations

from typing import Any

from bench.relay.stats import median, ratio


def _f(value: Any, digits: int = 2) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _level(levels: list[dict[str, Any]], streams: int) -> dict[str, Any] | None:
    exact = [lv for lv in levels if lv["streams"] == streams]
    return exact[0] if exact else (levels[-1] if levels else None)


def targets(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, measured, target, verdict) rows for the issue's targets."""
    sc = results["scenarios"]
    rows: list[tuple[str, str, str, str]] = []

    def row(
        name: str, value: float | None, limit: float, unit: str, at_least: bool = False
    ) -> None:
        rows.append(_verdict(name, value, limit, unit, at_least, 0 if at_least else 2))

    if "ws" in sc:
        level = _level(sc["ws"]["levels"], 200)
        if level:
            s, n = level["summary"]["sidecar"], level["streams"]
            row(f"added TTFT p50, WS, {n} streams", s["added_ttft_p50_ms"], 1, "ms")
            row(f"added TTFT p99, WS, {n} streams", s["added_ttft_p99_ms"], 5, "ms")
        cpu = cpu_per_token(results)
        row("sidecar CPU per relayed token, light load, tracing off", cpu["sidecar"], 25, "µs")
        row("… vs minimal relay", cpu["ratio"], 1.7, "×")
    for shape in sc.get("capacity", {}).get("shapes", []):
        traced, floor = shape["summary"]["sidecar+tracing"], shape["summary"]["minimal"]
        where = f"saturated, {shape['streams']} × {shape['rate_per_stream']:g} tok/s, tracing on"
        row(f"sidecar CPU per token, {where}", traced["cpu_us_per_token"], 25, "µs")
        row("… tokens/s per core", traced["tokens_per_s_per_core"], 40_000, "tok/s", True)
        row("… vs minimal relay", ratio(traced["cpu_us_per_token"], floor["cpu_us_per_token"]),
            1.7, "×")  # fmt: skip
    if "http" in sc:
        level = _level(sc["http"]["levels"], 200)
        if level:
            s, n = level["summary"]["sidecar"], level["streams"]
            row(f"added TTFT p50, HTTP, {n} streams", s["added_ttft_p50_ms"], 1, "ms")
            row(f"added TTFT p99, HTTP, {n} streams", s["added_ttft_p99_ms"], 5, "ms")
    for shape in sc.get("requests", {}).get("shapes", []):
        rows += request_targets(shape)
    for count in sc.get("idle", {}).get("counts", []):
        value = count["sidecar"]["kib_per_connection"]
        row(f"memory per idle connection, {count['connections']}", value, 20, "KiB")
    for key, value in sc.get("close", {}).items():
        if key.startswith("sidecar"):
            row(f"client close → upstream closed p99 ({key[8:]})", value["p99_ms"], 50, "ms")
    return rows


def request_targets(shape: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """Issue 33: the sidecar's added TTFT within 1 ms (p50) and 5 ms (p99) of nginx's, CPU per
    request ≤ 2× nginx's, requests/s within 3 % of direct at short/16; tracing off and on."""
    rows = []
    for level in shape["levels"]:
        s, users = level["summary"], level["users"]
        floor = s.get("nginx")
        if floor is None:
            continue
        for name in ("sidecar", "sidecar+tracing"):
            mine, where = s[name], f"{shape['shape']}, c={users}, {name}"
            for q, budget in (("p50", 1.0), ("p99", 5.0)):
                key = f"added_ttft_{q}_ms"
                gap = _sub(mine[key], floor[key])
                rows.append(_verdict(f"added TTFT {q} − nginx's, {where}", gap, budget, "ms"))
            cpu = ratio(mine["cpu_us_per_request"], floor["cpu_us_per_request"])
            rows.append(_verdict(f"CPU per request ÷ nginx's, {where}", cpu, 2.0, "×"))
            if shape["shape"] == "short" and users == 16:
                rate = mine["ratio_request_rate"]
                rows.append(_verdict(f"requests/s ÷ direct, {where}", rate, 0.97, "×", True))
    return rows


def _verdict(
    name: str, value: float | None, limit: float, unit: str, at_least: bool = False, digits: int = 2
) -> tuple[str, str, str, str]:
    met = value is not None and (value >= limit if at_least else value <= limit)
    verdict = "–" if value is None else ("met" if met else "**missed**")
    bound = f"{'≥' if at_least else '≤'} {limit:,g} {unit}"
    return (name, f"{_f(value, digits)} {unit}", bound, verdict)


def _sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _requests_table(scenario: dict[str, Any]) -> list[str]:
    lines = [
        "",
        f"## Per request: closed loop, first token after {scenario['ttft_s'] * 1000:g} ms",
        "",
        "| shape | c | variant | +TTFT p50 | +TTFT p99 | +total p50 | +total p99 | "
        "CPU µs/request | CPU µs/token | requests/s | ÷ direct | machine busy |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for shape in scenario["shapes"]:
        label = f"{shape['shape']} ({shape['tokens']} × {shape['rate']:g}/s)"
        for level in shape["levels"]:
            for name, s in level["summary"].items():
                added = ("ttft_p50_ms", "ttft_p99_ms", "total_p50_ms", "total_p99_ms")
                cells = [label, str(level["users"]), name]
                cells += [_f(s.get(f"added_{key}")) for key in added]
                cells += [_f(s["cpu_us_per_request"], 0), _f(s["cpu_us_per_token"], 1)]
                cells += [_f(s["request_rate"], 1), _f(s.get("ratio_request_rate"), 3)]
                busy = s.get("machine_busy")
                cells.append("–" if busy is None else f"{busy:.0%}")
                lines.append("| " + " | ".join(cells) + " |")
    errors = sum(
        v["errors"]
        for shape in scenario["shapes"]
        for lv in shape["levels"]
        for r in lv["rounds"]
        for v in r.values()
    )
    lines += [
        "",
        "Times in ms, added vs direct in the same round (median over rounds); CPU of the relay "
        "process (nginx: master + worker) over the round; machine busy: both cores, everything "
        f"running (simulator, clients, servers, other work). Client errors: {errors}.",
    ]
    return lines


def cpu_per_token(results: dict[str, Any]) -> dict[str, float | None]:
    """Median over the configured CPU levels of the per-level medians."""
    levels = results["scenarios"].get("ws", {}).get("levels", [])
    wanted = set(results["config"]["cpu_levels"])
    chosen = [lv for lv in levels if lv["streams"] in wanted] or levels
    side = median([lv["summary"]["sidecar"]["cpu_us_per_token"] for lv in chosen])
    floor = median([lv["summary"]["minimal"]["cpu_us_per_token"] for lv in chosen])
    return {"sidecar": side, "minimal": floor, "ratio": ratio(side, floor)}


def _latency_table(levels: list[dict[str, Any]]) -> list[str]:
    lines = [
        "| streams | tok/s each | variant | TTFT p50 | TTFT p99 | ITL p50 | ITL p99 | "
        "+TTFT p50 | +TTFT p99 | +ITL p50 | +ITL p99 | relay CPU µs/token | tokens/s |",
        "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for lv in levels:
        for name, s in lv["summary"].items():
            added = [s.get(f"added_{k}") for k in ("ttft_p50_ms", "ttft_p99_ms")]
            added += [s.get(f"added_{k}") for k in ("itl_p50_ms", "itl_p99_ms")]
            cells = [lv["streams"], _f(lv["rate_per_stream"], 1), name]
            cells += [_f(s[k]) for k in ("ttft_p50_ms", "ttft_p99_ms", "itl_p50_ms", "itl_p99_ms")]
            cells += [_f(a) for a in added]
            cells += [_f(s["cpu_us_per_token"], 1), _f(s["token_rate"], 0)]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    errors = sum(v["errors"] for lv in levels for r in lv["rounds"] for v in r.values())
    lines.append("")
    lines.append(
        f"Times in ms; `+` = added vs direct (median over rounds). Client errors: {errors}."
    )
    return lines


def _capacity_table(capacity: dict[str, Any]) -> list[str]:
    quota = capacity["quota"]
    lines = ["", f"## Capacity (each relay held to {quota:g} of a core, saturated)", ""]
    lines += [
        "| streams × tok/s | answer tokens | variant | tokens/s | CPU µs/token | "
        "tokens/s per core | quota used |",
        "|---|---:|---|---:|---:|---:|---:|",
    ]
    for shape in capacity["shapes"]:
        for name, s in shape["summary"].items():
            used = s["quota_used"]
            cells = [f"{shape['streams']} × {shape['rate_per_stream']:g}", shape["answer_tokens"]]
            cells += [name, _f(s["token_rate"], 0), _f(s["cpu_us_per_token"], 1)]
            cells += [_f(s["tokens_per_s_per_core"], 0), "–" if used is None else f"{used:.0%}"]
            lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    lines += [
        "",
        "Direct = what the simulator offered (no quota). A relay using less than ~90 % of its "
        "quota kept up, so it was not saturated and its tokens/s per core is a lower bound.",
    ]
    received = capacity.get("otlp_received")
    if received:
        lines.append(
            f"The traced sidecar's spans reached the OTLP receiver in {received['exports']} "
            f"exports ({received['bytes'] / 1e3:,.0f} kB)."
        )
    return lines


def markdown(results: dict[str, Any]) -> str:
    m, cfg, sc = results["machine"], results["config"], results["scenarios"]
    out = [
        f"# Relay benchmark ({cfg['name']})",
        "",
        f"{m['nproc']} × {m['cpu_model']}, Linux {m['kernel']}, Python {m['python']}; "
        f"load average at start {', '.join(f'{x:.2f}' for x in m['loadavg_at_start'])}. "
        f"{cfg['rounds']} round(s) × {cfg['duration']:g} s per variant; run took "
        f"{results.get('seconds', 0):.0f} s. Sidecar at {results['revision']['commit'][:10]}"
        f"{' + uncommitted changes' if results['revision']['sidecar_dirty'] else ''}.",
        "",
        *(
            ["**Quick run: a smoke test of the harness; its figures are not measurements.**", ""]
            if cfg["name"] == "quick"
            else []
        ),
        "## Targets",
        "",
        "| figure | measured | target | |",
        "|---|---:|---:|---|",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in targets(results)],
    ]
    if "ws" in sc:
        out += ["", "## WebSocket path (direct SSE = limit, minimal relay = floor)", ""]
        out += _latency_table(sc["ws"]["levels"])
    if "http" in sc:
        out += ["", "## HTTP path (direct SSE = limit, nginx = no-logic proxy)", ""]
        out += _latency_table(sc["http"]["levels"])
    if "requests" in sc:
        out += _requests_table(sc["requests"])
    if "ramp" in sc:
        ramp = sc["ramp"]
        out += ["", f"## Rate ramp ({ramp['streams']} WebSocket streams)", ""]
        out += [
            "| tok/s total | variant | ITL p99 ms | +ITL p99 | tokens/s | CPU µs/token | passed |"
        ]
        out += ["|---:|---|---:|---:|---:|---:|---|"]
        for step in ramp["steps"]:
            for name, r in step["results"].items():
                cells = [_f(step["aggregate_rate"], 0), name, _f(r["itl_p99_ms"])]
                cells += [_f(r.get("added_itl_p99_ms")), _f(r["token_rate"], 0)]
                cells.append(_f(r["cpu_us_per_token"], 1))
                cells.append(_f(r.get("passed", "")))
                out.append("| " + " | ".join(cells) + " |")
        best = ", ".join(f"{k} {_f(v, 0)} tok/s" for k, v in ramp["max_rate"].items())
        out += ["", f"Highest step with added p99 ITL ≤ {ramp['budget_ms']:g} ms: {best}."]
    if "capacity" in sc:
        out += _capacity_table(sc["capacity"])
    if "handshakes" in sc:
        hs = sc["handshakes"]["summary"]
        out += ["", "## WebSocket handshakes (connect + hello + close)", ""]
        out += ["| server | per second | CPU µs per handshake |", "|---|---:|---:|"]
        for name, s in hs.items():
            out.append(
                f"| {name} | {_f(s['per_second'], 0)} | {_f(s['cpu_us_per_handshake'], 0)} |"
            )
        s = hs["sidecar"]
        out += [
            "",
            f"Sidecar vs minimal: {_f(s['ratio_per_second_vs_minimal'])}× the rate, "
            f"{_f(s['ratio_cpu_us_per_handshake_vs_minimal'])}× the CPU per handshake.",
        ]
    if "idle" in sc:
        idle = sc["idle"]
        out += ["", f"## Idle connections (heartbeat every {idle['heartbeat_interval_s']:g} s)", ""]
        out += ["| connections | server | KiB each | RSS before → after MiB | alive | idle CPU % |"]
        out += ["|---:|---|---:|---:|---:|---:|"]
        for c in idle["counts"]:
            for name in ("sidecar", "minimal"):
                r = c[name]
                rss = f"{r['rss_before_mib']:.0f} → {r['rss_after_mib']:.0f}"
                out.append(
                    f"| {c['connections']} | {name} | {_f(r['kib_per_connection'], 1)} | {rss} | "
                    f"{r['alive_after_hold']}/{r['opened']} | {_f(r['idle_cpu_percent'], 1)} |"
                )
    if "close" in sc:
        out += ["", "## Client close → upstream connection closed", ""]
        out += ["| path | probes | p50 ms | p99 ms | max ms | upstream left open |"]
        out += ["|---|---:|---:|---:|---:|---:|"]
        for key, r in sc["close"].items():
            out.append(
                f"| {key} | {r['probes']} | {_f(r['p50_ms'])} | {_f(r['p99_ms'])} | "
                f"{_f(r['max_ms'])} | {r['upstream_not_closed']} |"
            )
    for name, error in results.get("errors", {}).items():
        out += ["", f"**{name} failed:** `{error.splitlines()[0]}`"]
    return "\n".join(out) + "\n"
