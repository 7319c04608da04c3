"""Alert vocabulary shared by the rules Prometheus evaluates (`sidecar.dashboards.rules`) and the
alerts the sidecar pushes to Alertmanager itself (`sidecar.drift.sinks`).

One page per incident: every alert name has exactly one owner. The sidecar's own push owns
`SidecarLatencyDrift` (it knows the episode: onset, baseline, escalation to critical, the exact
resolution, a minute or more before a rule on the gauge could); every other alert is a rule. No
rule may use a pushed name (tests/dashboards/test_rules.py checks it).
"""

from typing import Final

WARNING: Final = "warning"
CRITICAL: Final = "critical"
SEVERITIES: Final = (WARNING, CRITICAL)

LATENCY_DRIFT: Final = "SidecarLatencyDrift"
PUSHED_ALERTS: Final = frozenset({LATENCY_DRIFT})

# docs/runbook.md as published with the project's source; each alert has a section whose
# heading is the alert name (GitHub's anchor: the name in lower case).
RUNBOOK: Final = "https://github.com/ai-stream-sidecar/ai-stream-sidecar/blob/main/docs/runbook.md"


def runbook_url(alertname: str, base: str = RUNBOOK) -> str:
    return f"{base}#{alertname.lower()}"
