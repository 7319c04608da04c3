"""`sidecar report --format html`: one offline page with three charts, checked in Chromium."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from click.testing import CliRunner

from sidecar.cli.report import command
from sidecar.ledger.html import HtmlReport, render_html
from tests.support.chromium import Chromium, ChromiumProcess

COUNT_CHARTS = """JSON.stringify({
  svgs: document.querySelectorAll('svg[data-chart]').length,
  lines: document.querySelectorAll('svg[data-chart="cost-over-time"] path').length,
  models: [...document.querySelectorAll('svg[data-chart="cost-over-time"] path')]
    .map(p => p.dataset.model),
  points: document.querySelectorAll('svg[data-chart="cost-over-time"] circle').length,
  tokenBars: document.querySelectorAll('svg[data-chart="tokens"] rect').length,
  tenantBars: [...document.querySelectorAll('svg[data-chart="tenant-waste"] rect')]
    .map(r => r.querySelector('title').textContent),
  width: document.querySelector('svg[data-chart="cost-over-time"]').getBoundingClientRect().width,
  tableRows: document.querySelectorAll('table tbody tr').length,
  resources: performance.getEntriesByType('resource').length,
})"""


def test_html_report_renders_its_charts_offline(
    report_ledger: str, tmp_path: Path, chromium_process: ChromiumProcess
) -> None:
    page_file = tmp_path / "report.html"
    result = CliRunner().invoke(command, ["--db", report_ledger, "--since", "2026-11-21",
        "--until", "2026-11-23", "--format", "html", "--output", str(page_file)])  # fmt: skip
    assert result.exit_code == 0, (result.output, result.exception)
    text = page_file.read_text()
    # self-contained: no script, no external reference (the SVG namespace is not fetched)
    assert "<script" not in text and not re.search(r"\b(src|href)=", text)
    assert set(re.findall(r"https?://[^\s\"']+", text)) == {"http://www.w3.org/2000/svg"}

    async def look() -> tuple[dict[str, object], bytes]:
        async with Chromium(process=chromium_process) as browser:
            page = await browser.new_page(page_file.as_uri())
            facts = json.loads(await page.evaluate(COUNT_CHARTS))
            png = await page.screenshot(tmp_path / "report.png")
            await page.close()
            return facts, png

    facts, png = asyncio.run(look())
    assert facts == {
        "svgs": 3,
        "lines": 3,  # big, mystery, small
        "models": ["big", "mystery", "small"],
        "points": 3 * 26,  # per model, one point per hour from 21st 10:00 to 22nd 11:00
        "tokenBars": 3 * 3,  # generated, delivered, wasted for each of the 3 rows
        "tenantBars": [
            "acme: $0.000060 wasted, 11.5% of generated tokens",
            "globex: $0.000018 wasted, 50.0% of generated tokens",
        ],
        "width": 880,
        "tableRows": 3,
        "resources": 0,
    }
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5_000


def test_empty_period_renders_placeholders() -> None:
    empty = {"rows": [], "totals": {}}
    page = render_html(
        HtmlReport(
            title="t",
            period="p",
            by=("model",),
            columns=("streams",),
            report=empty,
            timeline=empty,
            bucket="day",
            tenants=empty,
        )
    )
    assert page.count("no data in this period") == 3
    assert "no streams in this period" in page
