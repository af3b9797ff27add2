"""Backtest of the replenishment demand forecast on generated history with known demand.

Each series is made from a known expected demand per day (a level, a linear trend and,
for half of them, a weekly pattern) plus integer noise from a seeded generator; the
forecast (``central_api.services.forecast``) is run from a rolling origin every week, 14
days ahead, and compared with what the series really did. Printed: MAE (units per day),
MAPE of the 14-day total (what a reorder decision uses) and of single days, and the same
for a naive baseline measured in the same run (the mean of the last 28 days).

    .venv/bin/python bench/forecast_backtest.py
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from central_api.services.forecast import Backtest, backtest

FIRST_DAY = date(2026, 1, 5)  # a Monday
WEEKLY = (0.8, 0.8, 0.9, 1.0, 1.2, 1.6, 0.7)
"""A shop's week, Monday first: the weekend sells most."""


@dataclass(frozen=True, slots=True)
class Profile:
    name: str
    level: float
    trend: float
    weekly: bool
    noise: float


PROFILES = (
    Profile("flat", 20, 0, False, 0.15),
    Profile("flat-weekly", 20, 0, True, 0.15),
    Profile("growing", 10, 0.05, False, 0.15),
    Profile("growing-weekly", 10, 0.05, True, 0.15),
    Profile("slow-weekly", 4, 0, True, 0.3),
)


def expected_demand(profile: Profile, days: int) -> list[float]:
    """The known mean demand of each day (what the noise is added to)."""
    factors = WEEKLY if profile.weekly else (1.0,) * 7
    return [
        (profile.level + profile.trend * day) * factors[(FIRST_DAY + timedelta(days=day)).weekday()]
        for day in range(days)
    ]


def generate_demand(profile: Profile, days: int, seed: int) -> list[Decimal]:
    """Whole units sold per day: the expected demand with Gaussian noise, never negative.
    The generator draws floats; what leaves it is an exact whole number."""
    rng = random.Random(seed)
    return [
        Decimal(max(0, round(mean + rng.gauss(0, profile.noise * mean))))
        for mean in expected_demand(profile, days)
    ]


def naive(series: list[Decimal], *, train: int, horizon: int, step: int) -> Backtest:
    """The baseline: every day forecast as the mean of the last 28 days."""
    totals: list[Decimal] = []
    errors: list[Decimal] = []
    origin = train
    while origin + horizon <= len(series):
        window = series[origin - 28 : origin]
        mean = sum(window, Decimal(0)) / len(window)
        actual = series[origin : origin + horizon]
        errors += [abs(mean - real) for real in actual]
        real_total = sum(actual, Decimal(0))
        if real_total:
            totals.append(abs(mean * horizon - real_total) / real_total * 100)
        origin += step
    mae = (sum(errors, Decimal(0)) / len(errors)).quantize(Decimal("0.01"))
    mape = (sum(totals, Decimal(0)) / len(totals)).quantize(Decimal("0.01"))
    return Backtest(origins=len(totals), mae=mae, mape=mape, daily_mape=Decimal(0))


def main() -> None:
    days, train, horizon, step = 182, 84, 14, 7
    print(
        f"{days} days per series, first forecast after {train}, {horizon} days ahead, "
        f"every {step} days; 3 seeds per profile"
    )
    print(
        f"{'profile':16} {'MAE/day':>8} {'MAPE 14d':>9} {'MAPE day':>9} | "
        f"{'naive MAE':>9} {'naive MAPE 14d':>14}"
    )
    for profile in PROFILES:
        ours: list[Backtest] = []
        base: list[Backtest] = []
        for seed in (1, 2, 3):
            series = generate_demand(profile, days, seed)
            ours.append(backtest(series, FIRST_DAY, train=train, horizon=horizon, step=step))
            base.append(naive(series, train=train, horizon=horizon, step=step))

        def avg(values: list[Decimal]) -> Decimal:
            return (sum(values, Decimal(0)) / len(values)).quantize(Decimal("0.01"))

        print(
            f"{profile.name:16} {avg([b.mae for b in ours]):>8} {avg([b.mape for b in ours]):>8}% "
            f"{avg([b.daily_mape for b in ours]):>8}% | {avg([b.mae for b in base]):>9} "
            f"{avg([b.mape for b in base]):>13}%"
        )


if __name__ == "__main__":
    main()
