"""The drift statistics against their trusted references: SciPy's own tests and distances."""

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import jensenshannon
from scipy.stats import chi2_contingency, wasserstein_distance

from fashionnet.data import drift
from fashionnet.data.catalog import NUM_CLASSES
from fashionnet.data.statistics import PROPERTIES, CardTally

BINS = len(PROPERTIES["brightness"].edges) - 1
counts = st.lists(st.integers(0, 5_000), min_size=BINS, max_size=BINS).map(np.array)
label_counts = st.lists(st.integers(0, 5_000), min_size=NUM_CLASSES, max_size=NUM_CLASSES)


@settings(max_examples=200, deadline=None)
@given(counts, counts)
def test_jensen_shannon_is_scipys(a, b):
    ours = drift.jensen_shannon(a, b)
    if a.sum() == 0 or b.sum() == 0:
        assert np.isnan(ours)
    else:
        assert ours == pytest.approx(jensenshannon(a, b, base=2), rel=1e-12, abs=1e-12)


@settings(max_examples=200, deadline=None)
@given(counts, counts, st.floats(0.01, 10))
def test_wasserstein_is_scipys_with_each_bins_images_at_its_centre(a, b, scale):
    edges = PROPERTIES["brightness"].edges
    ours = drift.wasserstein_normed(a, b, edges, scale)
    if a.sum() == 0 or b.sum() == 0:
        assert np.isnan(ours)
    else:
        centres = (edges[:-1] + edges[1:]) / 2
        theirs = wasserstein_distance(centres, centres, a, b) / scale
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-12)


def tally_with_labels(labels: list[int]) -> CardTally:
    """A card of images with these counts of labels 0, 1, ... (and no other label value)."""
    label_counts = CardTally.empty().label_counts.copy()
    label_counts[: len(labels)] = labels
    return dataclasses.replace(CardTally.empty(), images=sum(labels), label_counts=label_counts)


@settings(max_examples=200, deadline=None)
@given(label_counts, label_counts)
def test_the_label_test_is_scipys_chi_squared_without_correction(a, b):
    ours = drift.label_chi2_p_value(tally_with_labels(a), tally_with_labels(b))
    table = np.array([a, b])
    table = table[:, table.sum(axis=0) > 0]
    if table.shape[1] < 2 or (table.sum(axis=1) == 0).any():
        assert ours == 1.0  # nothing to compare
    else:
        theirs = chi2_contingency(table, correction=False).pvalue
        assert ours == pytest.approx(theirs, rel=1e-9, abs=1e-300)
