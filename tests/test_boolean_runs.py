# SPDX-License-Identifier: GPL-3.0-or-later
"""The one run finder: [start, end) of each run of True, whatever holds the mask."""

from __future__ import annotations

import numpy as np
import torch

from kmm_core.common.boolean_runs import true_runs


def test_runs_of_true_at_the_edges_and_inside():
    mask = [True, True, False, True, False, False, True]
    assert true_runs(mask) == [(0, 2), (3, 4), (6, 7)]
    assert true_runs(np.array(mask)) == true_runs(torch.tensor(mask)) == true_runs(mask)
    assert true_runs(np.zeros(5, bool)) == [] and true_runs(np.ones(3, bool)) == [(0, 3)] and true_runs([]) == []
    assert true_runs(np.array([0.0, 2.5, 1.0, 0.0])) == [(1, 3)]  # any non-zero counts as True
