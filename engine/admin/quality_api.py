"""Admin API route for the monthly data-quality bulletin: `GET /quality/monthly?month=YYYY-MM`.

`&org=` keeps one sending organisation (case-insensitive); `&format=html` answers the printable bulletin
(`&lang=en` for English), `&format=csv` the CSV, otherwise JSON. The bulletin holds counts, scores and
message ids only (no patient data), so it is guarded like `/status`. Without `month` the current month
(Beijing time) is shown.
"""

from __future__ import annotations

from datetime import datetime

from aiohttp import web

from engine.mapping.formats import BEIJING
from engine.quality.render import to_csv, to_html
from engine.quality.service import QualityReports


def add_routes(app: web.Application, reports: QualityReports) -> None:
    """Register `GET /quality/monthly`."""

    async def monthly(request: web.Request) -> web.Response:
        month = request.query.get("month") or datetime.now(BEIJING).strftime("%Y-%m")
        try:
            report = await reports.monthly(month, org=request.query.get("org") or None)
        except ValueError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        fmt = request.query.get("format", "json")
        if fmt == "html":
            return web.Response(text=to_html(report, lang=request.query.get("lang", "zh")),
                                content_type="text/html", charset="utf-8")
        if fmt == "csv":
            disposition = f'attachment; filename="quality-{month}.csv"'
            return web.Response(text=to_csv(report), content_type="text/csv", charset="utf-8",
                                headers={"Content-Disposition": disposition})
        return web.json_response(report)

    app.router.add_get("/quality/monthly", monthly)
