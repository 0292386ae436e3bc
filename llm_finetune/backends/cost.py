"""What a SageMaker job may cost, before it is launched: instances x hours x on-demand price.

The hours are the job's max runtime, so the estimate is an upper bound of what one job can bill. Prices come from
sagemaker_prices.csv (SageMaker on-demand list prices per instance-hour, us-east-1, as published on
aws.amazon.com/sagemaker/pricing; other regions differ by a few percent and use the us-east-1 row when they have none)
or from the recipe's `usd_per_hour`. Managed spot bills the spot price for the same hours, typically far less; the
estimate stays the on-demand bound and says so.
"""

from __future__ import annotations

import csv
from functools import cache
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from llm_finetune.errors import CostLimitError
from llm_finetune.recipes import SageMakerCompute

PRICES_FILE = Path(__file__).with_name("sagemaker_prices.csv")
PRICE_REGION = "us-east-1"


@cache
def price_table() -> dict[tuple[str, str], float]:
    with open(PRICES_FILE, newline="") as f:
        return {(row["region"], row["instance_type"]): float(row["usd_per_hour"]) for row in csv.DictReader(f)}


class CostEstimate(BaseModel):
    """Upper bound of one job's bill; `usd` is None when no price is known for the instance type."""

    kind: Literal["training", "processing"]
    instance_type: str
    instance_count: int
    hours: float
    usd_per_hour: float | None
    price_source: str
    spot: bool
    usd: float | None
    max_cost_usd: float | None

    def summary(self) -> str:
        price = f"${self.usd_per_hour:.3f}/h ({self.price_source})" if self.usd_per_hour else "no known price"
        total = f"${self.usd:,.2f}" if self.usd is not None else "unknown"
        spot = "; managed spot: billed at the spot price, usually well below this bound" if self.spot else ""
        limit = f"; limit ${self.max_cost_usd:,.2f}" if self.max_cost_usd is not None else ""
        return (f"SageMaker {self.kind} estimate: {self.instance_count} x {self.instance_type} x {self.hours:g} h "
                f"(max runtime) x {price} = {total} on demand{spot}{limit}")

    def markdown(self) -> str:
        rows = [("instances", f"{self.instance_count} x {self.instance_type}"),
                ("hours (max runtime)", f"{self.hours:g}"),
                ("on-demand price / instance-hour", f"${self.usd_per_hour:.3f}" if self.usd_per_hour else "unknown"),
                ("price source", self.price_source),
                ("estimate (upper bound)", f"${self.usd:,.2f}" if self.usd is not None else "unknown"),
                ("managed spot", "yes: billed at the spot price for at most these hours" if self.spot else "no"),
                ("max_cost_usd", f"${self.max_cost_usd:,.2f}" if self.max_cost_usd is not None else "not set")]
        body = "\n".join(f"| {k} | {v} |" for k, v in rows)
        return f"## SageMaker {self.kind} cost estimate\n\n| | |\n|---|---|\n{body}\n"


def estimate_cost(kind: Literal["training", "processing"], compute: SageMakerCompute, region: str) -> CostEstimate:
    if compute.usd_per_hour is not None:
        price, source = compute.usd_per_hour, f"recipe sagemaker.{kind}.usd_per_hour"
    elif (price := price_table().get((region, compute.instance_type))) is not None:
        source = f"{PRICES_FILE.name}, {region}"
    elif (price := price_table().get((PRICE_REGION, compute.instance_type))) is not None:
        source = f"{PRICES_FILE.name}, {PRICE_REGION} (no row for {region})"
    else:
        source = f"no row for {compute.instance_type} in {PRICES_FILE.name}"
    hours = compute.max_runtime_s / 3600
    return CostEstimate(kind=kind, instance_type=compute.instance_type, instance_count=compute.instance_count,
                        hours=round(hours, 4), usd_per_hour=price, price_source=source,
                        spot=getattr(compute, "spot", False),
                        usd=None if price is None else round(compute.instance_count * hours * price, 2),
                        max_cost_usd=compute.max_cost_usd)


def check_cost(estimate: CostEstimate) -> None:
    """Raise CostLimitError when the recipe sets max_cost_usd and the estimate exceeds it or is unknown."""
    limit = estimate.max_cost_usd
    if limit is None:
        return
    field = f"sagemaker.{estimate.kind}"
    if estimate.usd is None:
        raise CostLimitError(f"{estimate.summary()}: cannot check max_cost_usd without a price; set "
                             f"{field}.usd_per_hour")
    if estimate.usd > limit:
        raise CostLimitError(f"{estimate.summary()}: over the limit, not launched. Lower {field}.max_runtime_s or "
                             f"instance_count, pick a cheaper instance_type, or raise {field}.max_cost_usd")
