"""The bulletin as a terminal table, CSV (one row per organisation and dataset) or a printable HTML page.

The HTML is the document the platform publishes (数据质量月度通报): Chinese by default, English with
`lang="en"`; self-contained (inline CSS, no script, no external fetch) so it prints and archives as is.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from engine.mapping.formats import BEIJING

LABELS: dict[str, dict[str, str]] = {
    "zh": {
        "title": "宁波市智慧健康平台 数据质量月度通报",
        "month": "统计月份",
        "generated": "生成时间",
        "rank": "排名",
        "org": "机构代码",
        "score": "综合得分",
        "change": "较上月",
        "new": "新增",
        "received": "接收消息",
        "rejected": "解析拒收",
        "unrouted": "未路由",
        "filtered": "过滤",
        "mapped": "映射成功",
        "failed": "映射失败",
        "pending": "待处理",
        "dataset": "数据集",
        "records": "记录数",
        "req": "必填项完整率",
        "opt": "已映射选填项完整率",
        "validity": "有效率",
        "codes": "值域错误",
        "dates": "日期错误",
        "ids": "身份证号校验失败",
        "other": "其他错误",
        "p50": "时效 P50(小时)",
        "p95": "时效 P95(小时)",
        "within": "24小时内上报率",
        "dups": "重复记录",
        "worst": "问题最多的字段",
        "field": "字段",
        "missing": "缺失",
        "invalid": "无效",
        "examples": "示例消息ID",
        "ranking": "机构排名",
        "details": "分机构明细",
        "none": "本月无数据",
        "method": "得分 = 100 ×(有效率 35% + 完整率 30%(必填项权重为选填项两倍)+ 处理成功率 20% + "
        "24小时内上报率 15%)。机构代码不区分大小写。本通报不含任何患者个人信息。",
    },
    "en": {
        "title": "Ningbo Smart Health Platform — Monthly Data-Quality Bulletin",
        "month": "Month",
        "generated": "Generated",
        "rank": "Rank",
        "org": "Organisation",
        "score": "Score",
        "change": "vs last month",
        "new": "new",
        "received": "Received",
        "rejected": "Rejected at parse",
        "unrouted": "Unrouted",
        "filtered": "Filtered",
        "mapped": "Mapped",
        "failed": "Failed",
        "pending": "Pending",
        "dataset": "Dataset",
        "records": "Records",
        "req": "Required complete",
        "opt": "Mapped optional complete",
        "validity": "Valid",
        "codes": "Bad codes",
        "dates": "Bad dates",
        "ids": "Bad resident IDs",
        "other": "Other errors",
        "p50": "Delay p50 (h)",
        "p95": "Delay p95 (h)",
        "within": "Within 24 h",
        "dups": "Duplicates",
        "worst": "Worst fields",
        "field": "Field",
        "missing": "Missing",
        "invalid": "Invalid",
        "examples": "Example message ids",
        "ranking": "Ranking",
        "details": "Per organisation",
        "none": "No data this month",
        "method": "Score = 100 × (validity 35% + completeness 30% (required counts twice optional) + "
        "processing success 20% + within 24 h 15%). Organisation codes are case-insensitive. "
        "This bulletin carries no patient data.",
    },
}


def pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.1f}%"


def num(value: float | None) -> str:
    return "—" if value is None else f"{value:g}"


def change(entry: Mapping[str, Any], label: Mapping[str, str]) -> str:
    delta = entry.get("change")
    if not delta:
        return label["new"]
    arrow = "▲" if delta["rank"] > 0 else "▼" if delta["rank"] < 0 else "="
    return f"{delta['score']:+.1f} ({arrow}{abs(delta['rank']) or ''})"


def table(report: Mapping[str, Any]) -> str:
    """One line per organisation, then its datasets and worst fields (for a terminal)."""
    lines = [
        f"data-quality bulletin {report['month']} (UTC+8)",
        f"{'#':>3} {'ORG':<14} {'SCORE':>6} {'CHANGE':>12} {'RECV':>6} {'REJ':>5} {'UNRT':>5} "
        f"{'MAP':>6} {'FAIL':>5} {'REQ%':>6} {'OPT%':>6} {'VALID%':>7} {'P50H':>6} {'P95H':>6} {'DUP':>4}",
    ]
    for o in report["organisations"]:
        m = o["messages"]
        lines.append(
            f"{o['rank']:>3} {o['org']:<14} {o['score']:>6.1f} {change(o, LABELS['en']):>12} "
            f"{m['received']:>6} {m['rejected']:>5} {m['unrouted']:>5} {m['mapped']:>6} {m['failed']:>5} "
            f"{pct(o['completeness']['required']['rate']):>6} "
            f"{pct(o['completeness']['optional_mapped']['rate']):>6} {pct(o['validity']['rate']):>7} "
            f"{num(o['timeliness']['p50_hours']):>6} {num(o['timeliness']['p95_hours']):>6} "
            f"{o['duplicates']:>4}"
        )
        for f in o["worst_fields"]:
            lines.append(
                f"      worst: {f['field']} missing {f['missing']} invalid {f['invalid']} "
                f"e.g. {', '.join(f['examples'])}"
            )
    if not report["organisations"]:
        lines.append("(no messages in this month)")
    return "\n".join(lines)


CSV_COLUMNS = (
    "month",
    "rank",
    "org",
    "score",
    "score_change",
    "dataset",
    "received",
    "rejected",
    "unrouted",
    "records_mapped",
    "records_failed",
    "required_complete",
    "optional_mapped_complete",
    "valid",
    "bad_codes",
    "bad_dates",
    "bad_resident_ids",
    "other_errors",
    "delay_p50_hours",
    "delay_p95_hours",
    "within_24h",
    "duplicates",
)


def to_csv(report: Mapping[str, Any]) -> str:
    """One row per organisation (dataset `*`) and per organisation × dataset."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for o in report["organisations"]:
        m = o["messages"]
        rows = [("*", o, m)] + [(ds, d, None) for ds, d in o["datasets"].items()]
        for dataset, figs, msgs in rows:
            v = figs["validity"]["invalid_values"]
            writer.writerow(
                [
                    report["month"],
                    o["rank"],
                    o["org"],
                    o["score"],
                    "" if not o.get("change") else o["change"]["score"],
                    dataset,
                    "" if msgs is None else msgs["received"],
                    "" if msgs is None else msgs["rejected"],
                    "" if msgs is None else msgs["unrouted"],
                    figs["records"]["mapped"],
                    figs["records"]["failed"],
                    figs["completeness"]["required"]["rate"],
                    figs["completeness"]["optional_mapped"]["rate"],
                    figs["validity"]["rate"],
                    v["code"],
                    v["date"],
                    v["resident_id"],
                    v["other"],
                    figs["timeliness"]["p50_hours"],
                    figs["timeliness"]["p95_hours"],
                    figs["timeliness"]["within_24h"],
                    figs["duplicates"],
                ]
            )
    return out.getvalue()


_CSS = """
body{font-family:"Noto Sans CJK SC","WenQuanYi Zen Hei","Microsoft YaHei",sans-serif;margin:2em;color:#111}
h1{font-size:1.5em;text-align:center}h2{font-size:1.2em;border-bottom:2px solid #333;margin-top:2em}
h3{font-size:1.05em;margin-top:1.5em}table{border-collapse:collapse;width:100%;margin:.5em 0;font-size:.85em}
th,td{border:1px solid #999;padding:3px 6px;text-align:right}th{background:#eee}
td.t,th.t{text-align:left}.meta{text-align:center;color:#444}.note{font-size:.8em;color:#444}
@media print{body{margin:1cm}h2{page-break-before:auto}section{page-break-inside:avoid}}
"""


def to_html(report: Mapping[str, Any], *, lang: str = "zh") -> str:
    """The printable bulletin (self-contained HTML)."""
    label = LABELS["en" if lang == "en" else "zh"]
    esc = html.escape
    generated = report.get("generated_at")
    when = datetime.fromtimestamp(generated, BEIJING).strftime("%Y-%m-%d %H:%M") if generated else ""
    parts = [
        f'<!doctype html><html lang="{"en" if lang == "en" else "zh-CN"}"><head><meta charset="utf-8">',
        f"<title>{esc(label['title'])} {esc(report['month'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>{esc(label['title'])}</h1>",
        f'<p class="meta">{label["month"]}: {esc(report["month"])} (UTC+8)'
        + (f" · {label['generated']}: {when}" if when else "")
        + "</p>",
        f"<h2>{label['ranking']}</h2>",
    ]
    orgs = report["organisations"]
    if not orgs:
        parts.append(f"<p>{label['none']}</p>")
    else:
        head = [
            "rank",
            "org",
            "score",
            "change",
            "received",
            "rejected",
            "unrouted",
            "mapped",
            "failed",
            "req",
            "opt",
            "validity",
            "within",
            "dups",
        ]
        parts.append(
            '<table id="ranking"><tr>'
            + "".join(f'<th class="{"t" if k == "org" else ""}">{label[k]}</th>' for k in head)
            + "</tr>"
        )
        for o in orgs:
            m = o["messages"]
            cells = [
                o["rank"],
                esc(o["org"]),
                f"{o['score']:.1f}",
                esc(change(o, label)),
                m["received"],
                m["rejected"],
                m["unrouted"],
                m["mapped"],
                m["failed"],
                pct(o["completeness"]["required"]["rate"]),
                pct(o["completeness"]["optional_mapped"]["rate"]),
                pct(o["validity"]["rate"]),
                pct(o["timeliness"]["within_24h"]),
                o["duplicates"],
            ]
            parts.append(
                "<tr>"
                + "".join(f'<td class="{"t" if i == 1 else ""}">{c}</td>' for i, c in enumerate(cells))
                + "</tr>"
            )
        parts.append("</table>")
        parts.append(f"<h2>{label['details']}</h2>")
        for o in orgs:
            parts.append(
                f"<section><h3>{o['rank']}. {esc(o['org'])} — {label['score']} {o['score']:.1f}</h3>"
            )
            head = [
                "dataset",
                "records",
                "failed",
                "req",
                "opt",
                "validity",
                "codes",
                "dates",
                "ids",
                "other",
                "p50",
                "p95",
                "dups",
            ]
            parts.append(
                "<table><tr>"
                + "".join(f'<th class="{"t" if k == "dataset" else ""}">{label[k]}</th>' for k in head)
                + "</tr>"
            )
            for ds, d in o["datasets"].items():
                v = d["validity"]["invalid_values"]
                cells = [
                    f"{esc(d['title'])} ({esc(ds)})",
                    d["records"]["mapped"],
                    d["records"]["failed"],
                    pct(d["completeness"]["required"]["rate"]),
                    pct(d["completeness"]["optional_mapped"]["rate"]),
                    pct(d["validity"]["rate"]),
                    v["code"],
                    v["date"],
                    v["resident_id"],
                    v["other"],
                    num(d["timeliness"]["p50_hours"]),
                    num(d["timeliness"]["p95_hours"]),
                    d["duplicates"],
                ]
                parts.append(
                    "<tr>"
                    + "".join(f'<td class="{"t" if i == 0 else ""}">{c}</td>' for i, c in enumerate(cells))
                    + "</tr>"
                )
            parts.append("</table>")
            if o["worst_fields"]:
                parts.append(
                    f'<table><tr><th class="t">{label["worst"]}</th><th>{label["missing"]}</th>'
                    f'<th>{label["invalid"]}</th><th class="t">{label["examples"]}</th></tr>'
                )
                for f in o["worst_fields"]:
                    parts.append(
                        f'<tr><td class="t">{esc(f["field"])}</td><td>{f["missing"]}</td>'
                        f'<td>{f["invalid"]}</td><td class="t">{esc(", ".join(f["examples"]))}</td></tr>'
                    )
                parts.append("</table>")
            parts.append("</section>")
    parts.append(f'<p class="note">{esc(label["method"])}</p></body></html>')
    return "\n".join(parts)
