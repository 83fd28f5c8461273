"""Drift: how far a split's data lies from the training split's, statistic by statistic.

Every statistic is computed from two cards (`statistics.CardTally`) and always reported, with its
threshold, whether or not it crosses it (drift.csv). docs/DATA_VALIDATION.md defines each one.

- label: the L-infinity distance of the class shares (the largest difference of one label's
  share) and the p-value of a chi-squared test that both splits draw labels from one
  distribution (a 2 x labels contingency table, as `scipy.stats.chi2_contingency`);
- each image property: the Jensen-Shannon distance of its two histograms (base 2, so 0..1) and
  the Wasserstein distance between them (bins at their centres) divided by the training
  split's standard deviation of the property;
- the mean image: the largest difference of one pixel's mean;
- the mean image of each class: the root mean square difference over the pixels of that class's
  two mean images, for the class where it is largest (classes in both splits only): what
  labels swapped at random move, while the class shares stay as they were.

A histogram distance grows as samples shrink even when nothing changed (with 25 bins, two
samples of 1,000 images from one distribution lie about 0.08 apart in Jensen-Shannon distance,
of 10,000 about 0.03): no verdict is given for a split, or against a training split, of fewer
than MIN_VERDICT_IMAGES images; the values are still written.

Every run computes this table, so it is written with `scipy.special` alone: importing
`scipy.stats` and `scipy.spatial` would add most of a second to each run. The tests check each
statistic against `scipy.stats`' and `scipy.spatial`'s, its trusted references.
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.special import chdtrc, rel_entr

from fashionnet.data.catalog import CLASS_NAMES
from fashionnet.data.statistics import PROPERTIES, CardTally

MIN_VERDICT_IMAGES = 2_000


@dataclass(frozen=True)
class Statistic:
    """How a drift statistic is read: its name in drift.csv, the threshold, and whether a
    value above it (a distance) or below it (a p-value) is drift."""

    name: str
    threshold: float
    drifted_when: str  # "above" or "below"
    words: str  # how the warning line names it, briefly

    def drifted(self, value: float) -> bool:
        if np.isnan(value):
            return False
        return value > self.threshold if self.drifted_when == "above" else value < self.threshold


LABEL_LINF = Statistic("linf_distance", 0.05, "above", "L-infinity")
LABEL_CHI2 = Statistic("chi2_p_value", 0.001, "below", "chi-squared p")
JENSEN_SHANNON = Statistic("jensen_shannon", 0.1, "above", "Jensen-Shannon")
WASSERSTEIN = Statistic("wasserstein_normed", 0.1, "above", "Wasserstein/sd")
MEAN_IMAGE = Statistic("max_pixel_difference", 0.1, "above", "largest pixel difference")
CLASS_MEAN = Statistic("rms_difference", 0.04, "above", "RMS pixel difference")
STATISTICS = (LABEL_LINF, LABEL_CHI2, JENSEN_SHANNON, WASSERSTEIN, MEAN_IMAGE, CLASS_MEAN)

# drift.csv: one row per split compared, feature and statistic. `item` names the class where
# the class mean images differ most; `verdict` is drifted, no drift, or no verdict (a split of
# fewer than MIN_VERDICT_IMAGES images).
DRIFT_COLUMNS = [
    "split",
    "reference",
    "feature",
    "statistic",
    "item",
    "value",
    "threshold",
    "drifted_when",
    "images",
    "reference_images",
    "verdict",
]
DRIFTED, NO_DRIFT, NO_VERDICT = "drifted", "no drift", "no verdict"


def label_linf(reference: CardTally, split: CardTally) -> float:
    """The largest difference between the two splits' shares of one label value."""
    shares = [
        t.label_counts / t.images if t.images else t.label_counts * 0.0 for t in (reference, split)
    ]
    return float(np.abs(shares[0] - shares[1]).max())


def label_chi2_p_value(reference: CardTally, split: CardTally) -> float:
    """The p-value of the chi-squared test of homogeneity of the two label distributions (1.0
    when there is nothing to compare: one label value in all, or an empty split)."""
    table = np.stack([reference.label_counts, split.label_counts])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        return 1.0
    expected = np.outer(table.sum(axis=1), table.sum(axis=0)) / table.sum()
    statistic = ((table - expected) ** 2 / expected).sum()
    return float(chdtrc(table.shape[1] - 1, statistic))  # the chi-squared survival function


def jensen_shannon(counts_a: np.ndarray, counts_b: np.ndarray) -> float:
    """The Jensen-Shannon distance (base 2: 0 same, 1 disjoint) of two histograms; NaN if
    either is empty."""
    if counts_a.sum() == 0 or counts_b.sum() == 0:
        return float("nan")
    p, q = counts_a / counts_a.sum(), counts_b / counts_b.sum()
    middle = (p + q) / 2
    divergence = (rel_entr(p, middle).sum() + rel_entr(q, middle).sum()) / 2  # in nats
    return float(np.sqrt(divergence / np.log(2)))


def wasserstein_normed(
    counts_a: np.ndarray, counts_b: np.ndarray, edges: np.ndarray, scale: float
) -> float:
    """The Wasserstein (earth mover's) distance between two histograms, each bin's images at
    its centre, divided by `scale` (the training split's standard deviation); NaN if either
    histogram is empty."""
    if counts_a.sum() == 0 or counts_b.sum() == 0:
        return float("nan")
    # On one support the distance is the area between the two cumulative distributions.
    centres = (edges[:-1] + edges[1:]) / 2
    cdf_a, cdf_b = (np.cumsum(c)[:-1] / c.sum() for c in (counts_a, counts_b))
    distance = float(np.sum(np.abs(cdf_a - cdf_b) * np.diff(centres)))
    if scale > 0:
        return float(distance / scale)
    return 0.0 if distance == 0 else float("inf")


def mean_image_difference(reference: CardTally, split: CardTally) -> float:
    if not reference.images or not split.images:
        return float("nan")
    return float(np.abs(reference.pixel_mean() - split.pixel_mean()).max())


def class_mean_difference(reference: CardTally, split: CardTally) -> tuple[float, str]:
    """The largest root mean square difference of a class's two mean images, and that class
    (classes with images in both splits; NaN when there is none)."""
    both = np.flatnonzero((reference.class_counts() > 0) & (split.class_counts() > 0))
    if not len(both):
        return float("nan"), ""
    difference = reference.class_mean_images()[both] - split.class_mean_images()[both]
    rms = np.sqrt((difference**2).mean(axis=1))
    worst = int(np.argmax(rms))
    return float(rms[worst]), CLASS_NAMES[both[worst]]


def drift_rows(
    reference_name: str, reference: CardTally, split_name: str, split: CardTally
) -> pd.DataFrame:
    """drift.csv's rows of one split against the reference (training) split."""
    values: list[tuple[str, Statistic, str, float]] = [
        ("label", LABEL_LINF, "", label_linf(reference, split)),
        ("label", LABEL_CHI2, "", label_chi2_p_value(reference, split)),
    ]
    for name, prop in PROPERTIES.items():
        counts = reference.histograms[name], split.histograms[name]
        scale = reference.property_std(name)
        values += [
            (name, JENSEN_SHANNON, "", jensen_shannon(*counts)),
            (name, WASSERSTEIN, "", wasserstein_normed(*counts, prop.edges, scale)),
        ]
    values.append(("mean_image", MEAN_IMAGE, "", mean_image_difference(reference, split)))
    rms, worst = class_mean_difference(reference, split)
    values.append(("class_mean_image", CLASS_MEAN, worst, rms))
    enough = min(reference.images, split.images) >= MIN_VERDICT_IMAGES
    rows = [
        {
            "split": split_name,
            "reference": reference_name,
            "feature": feature,
            "statistic": statistic.name,
            "item": item,
            "value": value,
            "threshold": statistic.threshold,
            "drifted_when": statistic.drifted_when,
            "images": split.images,
            "reference_images": reference.images,
            "verdict": (DRIFTED if statistic.drifted(value) else NO_DRIFT)
            if enough
            else NO_VERDICT,
        }
        for feature, statistic, item, value in values
    ]
    return pd.DataFrame(rows, columns=DRIFT_COLUMNS)


def drift_table(reference_name: str, tallies: dict[str, CardTally]) -> pd.DataFrame:
    """drift.csv: every other split against `reference_name`, in the tallies' order."""
    reference = tallies[reference_name]
    frames = [
        drift_rows(reference_name, reference, name, tally)
        for name, tally in tallies.items()
        if name != reference_name
    ]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=DRIFT_COLUMNS)


_WORDS = {statistic.name: statistic.words for statistic in STATISTICS}


def drifted_lines(table: pd.DataFrame) -> list[str]:
    """One line per drifted split and reference it drifted from, naming each feature and
    statistic beyond its threshold:
    `test drifted from train: brightness (Jensen-Shannon 0.35 > 0.1, Wasserstein/sd 0.67 > 0.1)`.
    """
    lines = []
    drifted = table[table["verdict"] == DRIFTED]
    for (split, reference), rows in drifted.groupby(["split", "reference"], sort=False):
        features = []
        for feature, found in rows.groupby("feature", sort=False):
            item = found["item"].iloc[0]
            named = f"{feature} {item}" if item else feature
            values = ", ".join(
                f"{_WORDS[row.statistic]} {row.value:.3g} "
                f"{'>' if row.drifted_when == 'above' else '<'} {row.threshold:g}"
                for row in found.itertuples()
            )
            features.append(f"{named} ({values})")
        lines.append(f"{split} drifted from {reference}: " + "; ".join(features))
    return lines
