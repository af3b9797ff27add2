"""Demand forecast for replenishment: Holt's linear exponential smoothing on daily demand,
with weekly seasonal indices when the history shows a weekly pattern.

Pure functions on a list of daily quantities (oldest first), in exact decimals: the
forecast feeds a purchase quantity, and floats would make the same history give different
suggestions on different machines. The method (``docs/replenishment.md``):

1. **Seasonality check.** With at least four weeks of history, the lag-7 autocorrelation
   ``r7`` of the series is compared with ``max(0.3, 2/√n)`` (the usual ±2/√n white-noise
   bound, and a floor so a weak pattern in a long series is not "significant"). When it is
   above, the series is weekly-seasonal.
2. **Seasonal indices.** The mean demand of each weekday over the overall mean (the seven
   indices sum to 7); the series is divided by them before smoothing, and forecasts are
   multiplied back. A weekday that never sold keeps index 0.
3. **Holt smoothing** of the (deseasonalised) series: level ``L`` and trend ``T`` with
   ``α = 0.1``, ``β = 0.05`` (chosen on the backtest, see the docs); the trend is damped
   (``φ = 0.9``) so a few high days do not extrapolate without end. The forecast for
   day ``h`` ahead is ``L + (φ+…+φ^h)·T`` times the index of that day's weekday, never
   below zero.

Known demand in, known error out: ``bench/forecast_backtest.py`` generates series with a
known level, trend and weekly pattern and reports MAE and MAPE of this forecast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, localcontext

ALPHA = Decimal("0.1")
BETA = Decimal("0.05")
PHI = Decimal("0.9")
SEASON = 7
MIN_SEASONAL_DAYS = 4 * SEASON
R7_FLOOR = Decimal("0.3")
PLACES = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class Forecast:
    """What the history said and what it predicts."""

    days: int
    mean: Decimal
    r7: Decimal | None
    seasonal: bool
    indices: tuple[Decimal, ...]
    """Seven indices by weekday (Monday first); all 1 when not seasonal."""
    level: Decimal
    trend: Decimal
    daily: tuple[Decimal, ...]
    """The forecast for each day of the horizon asked for."""

    @property
    def total(self) -> Decimal:
        return sum(self.daily, Decimal(0))


def autocorrelation(series: Sequence[Decimal], lag: int) -> Decimal | None:
    """The sample autocorrelation at ``lag``; None when undefined (too short, constant)."""
    n = len(series)
    if n <= lag + 1:
        return None
    mean = sum(series, Decimal(0)) / n
    deviations = [value - mean for value in series]
    denominator = sum((d * d for d in deviations), Decimal(0))
    if denominator == 0:
        return None
    numerator = sum(
        (deviations[t] * deviations[t - lag] for t in range(lag, n)),
        Decimal(0),
    )
    return numerator / denominator


def seasonal_indices(series: Sequence[Decimal], first_day: date) -> tuple[Decimal, ...]:
    """Mean demand per weekday over the overall mean, Monday first (they sum to 7)."""
    sums = [Decimal(0)] * SEASON
    counts = [0] * SEASON
    for offset, value in enumerate(series):
        weekday = (first_day + timedelta(days=offset)).weekday()
        sums[weekday] += value
        counts[weekday] += 1
    means = [sums[d] / counts[d] if counts[d] else Decimal(0) for d in range(SEASON)]
    overall = sum(means, Decimal(0)) / SEASON
    if overall == 0:
        return (Decimal(1),) * SEASON
    return tuple(mean / overall for mean in means)


def forecast(series: Sequence[Decimal], first_day: date, horizon: int) -> Forecast:
    """Forecast ``horizon`` days after the last day of ``series`` (which starts on
    ``first_day``); an empty history forecasts zero."""
    with localcontext() as context:
        context.prec = 28
        n = len(series)
        if n == 0:
            zero = Decimal(0)
            return Forecast(
                0, zero, None, False, (Decimal(1),) * SEASON, zero, zero, (zero,) * horizon
            )
        mean = sum(series, Decimal(0)) / n
        r7 = autocorrelation(series, SEASON) if n >= MIN_SEASONAL_DAYS else None
        bound = max(R7_FLOOR, 2 / Decimal(n).sqrt())
        seasonal = r7 is not None and r7 > bound
        indices = seasonal_indices(series, first_day) if seasonal else (Decimal(1),) * SEASON

        def weekday(offset: int) -> int:
            return (first_day + timedelta(days=offset)).weekday()

        adjusted = [
            value / indices[weekday(t)] if indices[weekday(t)] > 0 else mean
            for t, value in enumerate(series)
        ]
        level = adjusted[0]
        trend = Decimal(0)
        for value in adjusted[1:]:
            previous = level
            level = ALPHA * value + (1 - ALPHA) * (previous + PHI * trend)
            trend = BETA * (level - previous) + (1 - BETA) * PHI * trend
        daily: list[Decimal] = []
        damping = Decimal(0)
        factor = Decimal(1)
        for h in range(1, horizon + 1):
            factor *= PHI
            damping += factor
            value = (level + damping * trend) * indices[weekday(n - 1 + h)]
            daily.append(max(value, Decimal(0)).quantize(PLACES))
        return Forecast(
            days=n,
            mean=mean.quantize(PLACES),
            r7=None if r7 is None else r7.quantize(Decimal("0.0001")),
            seasonal=seasonal,
            indices=tuple(index.quantize(Decimal("0.0001")) for index in indices),
            level=level.quantize(PLACES),
            trend=trend.quantize(PLACES),
            daily=tuple(daily),
        )


@dataclass(frozen=True, slots=True)
class Backtest:
    """Rolling-origin errors of :func:`forecast` against what really happened."""

    origins: int
    mae: Decimal
    mape: Decimal
    """Mean absolute percentage error of each origin's *horizon total* (the quantity a
    reorder decision uses), in percent."""
    daily_mape: Decimal
    """The same of each single day (noisier; days with zero demand are left out)."""


def backtest(
    series: Sequence[Decimal], first_day: date, *, train: int, horizon: int, step: int
) -> Backtest:
    """Forecast from ``train`` days on, every ``step`` days, ``horizon`` ahead; compare."""
    totals_abs: list[Decimal] = []
    totals_pct: list[Decimal] = []
    daily_abs: list[Decimal] = []
    daily_pct: list[Decimal] = []
    origin = train
    while origin + horizon <= len(series):
        made = forecast(series[:origin], first_day, horizon)
        actual = series[origin : origin + horizon]
        for predicted, real in zip(made.daily, actual, strict=True):
            daily_abs.append(abs(predicted - real))
            if real > 0:
                daily_pct.append(abs(predicted - real) / real * 100)
        real_total = sum(actual, Decimal(0))
        totals_abs.append(abs(made.total - real_total))
        if real_total > 0:
            totals_pct.append(abs(made.total - real_total) / real_total * 100)
        origin += step

    def mean(values: list[Decimal]) -> Decimal:
        return (
            (sum(values, Decimal(0)) / len(values)).quantize(Decimal("0.01"))
            if values
            else Decimal(0)
        )

    return Backtest(
        origins=len(totals_abs),
        mae=mean(daily_abs),
        mape=mean(totals_pct),
        daily_mape=mean(daily_pct),
    )
