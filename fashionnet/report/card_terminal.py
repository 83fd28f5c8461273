"""A split's data card in the terminal (`fashionnet card`): its size, classes, pixel checks and
the distribution of each image property, from the same `CardTally` as card.csv."""

from rich.console import Console

from fashionnet.data.catalog import CLASS_NAMES, NUM_CLASSES
from fashionnet.data.statistics import PROPERTIES, QUANTILES, CardTally
from fashionnet.data.validate import SplitCard
from fashionnet.report.terminal import fitted_tables


def class_rows(tally: CardTally) -> list[list[str]]:
    """Images and share of each label value present or expected: the classes, then any label
    outside them."""
    rows = [
        [f"{label} {CLASS_NAMES[label]}", f"{count:,}", f"{share:.2%}"]
        for label, (count, share) in enumerate(
            zip(tally.class_counts(), tally.class_shares(), strict=True)
        )
    ]
    for value in range(NUM_CLASSES, len(tally.label_counts)):
        if count := int(tally.label_counts[value]):
            rows.append(
                [f"{value} (outside the classes)", f"{count:,}", f"{count / tally.images:.2%}"]
            )
    return rows


# The quantiles the terminal shows (card.csv has every one of QUANTILES).
SHOWN_QUANTILES = (0.05, 0.5, 0.95)


def property_rows(tally: CardTally) -> tuple[list[str], list[list[str]]]:
    header = ["property", "mean", "std", "min", *(f"{q:.0%}" for q in SHOWN_QUANTILES), "max"]
    rows = []
    for name in PROPERTIES:
        if not tally.images:
            rows.append([name, *["-"] * (len(header) - 1)])
            continue
        values = [
            tally.property_mean(name),
            tally.property_std(name),
            tally.property_min[name],
            *(tally.quantiles(name)[QUANTILES.index(q)] for q in SHOWN_QUANTILES),
            tally.property_max[name],
        ]
        rows.append([name, *(f"{value:.3g}" for value in values)])
    return header, rows


def render_card(split: str, card: SplitCard, console: Console | None = None) -> None:
    """Print a split's card."""
    console = console or Console()
    tally, width = card.tally, console.width
    console.print(f"[bold]Data card of {split}[/bold]: {tally.images:,} images")
    console.print(*fitted_tables("Classes", ["label", "images", "share"], class_rows(tally), width))
    console.print(*fitted_tables("Image properties", *property_rows(tally), width))
    problems = [
        ("values not finite", tally.non_finite),
        ("values outside [0, 1]", tally.out_of_range),
        ("values that are not a byte / 255", tally.off_grid),
    ]
    rows = [[name, f"{count:,}"] for name, count in problems]
    console.print(*fitted_tables("Pixel values", ["check", "count"], rows, width))
    exact = card.keys.exact
    copies = len(exact) - len(set(exact.tolist()))
    console.print(f"Images that repeat an earlier image of the split byte for byte: {copies:,}")
    console.print("Definitions: docs/DATA_VALIDATION.md; every number: card.csv of a run folder.")
