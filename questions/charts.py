"""The timeliness chart as shapes for the template to draw as inline SVG: one horizontal bar per month, its
length the questions due, split into on time, late, still overdue and the rest. Horizontal, so that each month's
label stays readable when the chart shrinks to a phone's width."""

from __future__ import annotations

from dataclasses import dataclass

from questions.timeliness import Month, Timeliness

WIDTH = 400
LABEL_WIDTH = 70  # the month's name, right-aligned before its bar
BAR_LEFT = LABEL_WIDTH + 6
BAR_SPACE = 280  # the longest bar; the rest of the width is its total
LEGEND_HEIGHT = 34
ROW_HEIGHT = 26
BAR_HEIGHT = 18

# What each part of a bar is, in the order drawn from the left, and its fill (a pattern of the template's).
PARTS = (("on_time", "On time", "url(#fill-on-time)"), ("late", "Late", "url(#fill-late)"),
         ("overdue", "Still overdue", "url(#fill-overdue)"), ("other", "Other", "url(#fill-other)"))
LEGEND_X = (0, 92, 160, 290)


@dataclass(frozen=True)
class Segment:
    x: float
    width: float
    fill: str
    label: str
    count: int


@dataclass(frozen=True)
class Bar:
    label: str  # "Jan 2026"
    y: int  # the bar's top
    text_y: int  # the baseline of its label and total
    segments: tuple[Segment, ...]
    total: int
    total_x: float


@dataclass(frozen=True)
class LegendItem:
    x: int
    fill: str
    label: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: tuple[Bar, ...]
    legend: tuple[LegendItem, ...]
    swatch_y: int
    legend_text_y: int


def chart(timeliness: Timeliness) -> Chart:
    longest = max((month.due for month in timeliness.months), default=0) or 1
    scale = BAR_SPACE / longest
    bars = []
    for row, month in enumerate(timeliness.months):
        y = LEGEND_HEIGHT + row * ROW_HEIGHT
        bars.append(_bar(month, y, scale))
    legend = tuple(LegendItem(x, fill, label) for x, (_, label, fill) in zip(LEGEND_X, PARTS, strict=True))
    return Chart(width=WIDTH, height=LEGEND_HEIGHT + len(bars) * ROW_HEIGHT, bars=tuple(bars), legend=legend,
                 swatch_y=4, legend_text_y=16)


def _bar(month: Month, y: int, scale: float) -> Bar:
    x = float(BAR_LEFT)
    segments = []
    for name, label, fill in PARTS:
        count = getattr(month, name)
        if count:
            width = round(count * scale, 2)
            segments.append(Segment(round(x, 2), width, fill, label, count))
            x += width
    return Bar(label=month.first_day.strftime("%b %Y"), y=y, text_y=y + BAR_HEIGHT - 4,
               segments=tuple(segments), total=month.due, total_x=round(x + 5, 2))
