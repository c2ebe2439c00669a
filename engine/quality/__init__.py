"""The monthly data-quality bulletin (数据质量月度通报): computed from the store, rendered as
table/JSON/CSV/HTML."""

from engine.quality.bulletin import (
    DatasetFields,
    RouteFields,
    bulletin,
    dataset_fields,
    fold_org,
    month_bounds,
    previous_month,
    route_fields,
)
from engine.quality.render import table, to_csv, to_html

__all__ = [
    "DatasetFields",
    "RouteFields",
    "bulletin",
    "dataset_fields",
    "fold_org",
    "month_bounds",
    "previous_month",
    "route_fields",
    "table",
    "to_csv",
    "to_html",
]
