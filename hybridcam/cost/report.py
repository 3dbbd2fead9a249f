"""Rich tables and the closing sentences of `hybridcam cost`."""

from __future__ import annotations

from rich.table import Table

from cost_model.estimate import ArchitectureEstimate
from cost_model.price_sets import PriceSet


def _usd(value: float) -> str:
    return f"{value:,.2f}"


def line_item_names(estimates: list[ArchitectureEstimate]) -> list[str]:
    names: list[str] = []
    for estimate in estimates:
        names.extend(item.name for item in estimate.items if item.name not in names)
    return names


def comparison_table(estimates: list[ArchitectureEstimate]) -> Table:
    """Line items down, architectures across; blank where an item does not apply."""
    table = Table(title="Monthly cost per line item (USD)", show_lines=False, header_style="bold")
    table.add_column("Line item", no_wrap=True)
    for estimate in estimates:
        table.add_column(estimate.title, justify="right")
    for name in line_item_names(estimates):
        cells = []
        for estimate in estimates:
            item = estimate.item(name)
            cells.append(_usd(item.usd) if item else "")
        table.add_row(name, *cells)
    table.add_section()
    table.add_row("[bold]Monthly total[/bold]", *[f"[bold]{_usd(e.total)}[/bold]" for e in estimates])
    table.add_row("USD per camera-hour", *[f"{e.per_camera_hour:,.4f}" for e in estimates])
    return table


def detail_table(estimate: ArchitectureEstimate, prices: PriceSet) -> Table:
    """Quantities and the price each line item was charged at, with the figure's provenance."""
    table = Table(title=estimate.title, header_style="bold")
    table.add_column("Line item", no_wrap=True)
    table.add_column("Quantity", justify="right")
    table.add_column("Unit")
    table.add_column("USD", justify="right")
    table.add_column("Price source")
    for item in estimate.items:
        price = prices.get(item.price_key)
        source = "scenario input" if price is None else f"{price.source} ({price.taken.isoformat()})"
        if price is not None and price.unsure:
            source += " [unsure]"
        table.add_row(item.name, f"{item.quantity:,.1f}", item.unit, _usd(item.usd), source)
    return table


def unpriced_lines(estimates: list[ArchitectureEstimate], prices: PriceSet) -> list[str]:
    return [
        f"{e.title}: not priced in set '{prices.name}': {', '.join(e.unpriced)}." for e in estimates if e.unpriced
    ]


def what_this_means(estimates: list[ArchitectureEstimate]) -> str:
    ranked = sorted(estimates, key=lambda e: e.total)
    cheapest = ranked[0]
    if len(ranked) == 1:
        return f"What this means: only {cheapest.title} was priced, at {_usd(cheapest.total)} USD a month."
    runner_up = ranked[1]
    saving = runner_up.total - cheapest.total
    share = f" ({saving / runner_up.total:.0%})" if runner_up.total else ""
    dearest = ranked[-1]
    ratio = f"; the dearest, {dearest.title}, costs {dearest.total / cheapest.total:,.1f}x as much" if (
        cheapest.total > 0 and dearest is not runner_up
    ) else ""
    return (
        f"What this means: {cheapest.title} is cheapest at {_usd(cheapest.total)} USD a month, "
        f"{_usd(saving)} USD{share} less than the next, {runner_up.title} ({_usd(runner_up.total)} USD){ratio}."
    )
