"""The patient-level train / test split of an export, stratified by tumor presence."""

from __future__ import annotations

import numpy as np


def split_cases(has_tumor: dict, test_fraction: float, seed: int) -> dict:
    """Patient-level split, stratified by tumor presence.

    The case ids with a tumor and those without are sorted, shuffled separately with
    ``numpy.random.default_rng(seed)``, and the first ``round(test_fraction * n)`` of each
    group go to ``test``: every case with a tumor has the same chance to be tested, and the
    test set has its share of tumor cases. Two corrections for tiny datasets: with two or more
    cases and ``test_fraction > 0`` at least one case is tested (from the tumor group if it
    has one), and at least one case is always left for training (the last one drawn for test
    from the no-tumor group, else from the tumor group).

    Parameters
    ----------
    has_tumor : dict case_id -> bool
    test_fraction : float in [0, 1)
    seed : int

    Returns
    -------
    dict case_id -> ``"train"`` or ``"test"``, the same for the same arguments.

    Examples
    --------
    >>> split_cases({0: True, 1: True, 2: False, 3: False, 4: True}, 0.4, seed=0)
    ... # doctest: +SKIP
    {0: 'train', 1: 'test', 2: 'test', 3: 'train', 4: 'train'}
    """
    if not 0 <= test_fraction < 1:
        raise ValueError(f"test_fraction must be in [0, 1), got {test_fraction}")
    rng = np.random.default_rng(seed)
    split = {cid: "train" for cid in sorted(has_tumor)}
    groups = [sorted(c for c, t in has_tumor.items() if t),
              sorted(c for c, t in has_tumor.items() if not t)]
    drawn = []
    for ids in groups:
        order = list(rng.permutation(len(ids)))
        chosen = [ids[i] for i in order[: int(round(test_fraction * len(ids)))]]
        drawn.append(chosen)
        for cid in chosen:
            split[cid] = "test"
    n_test = sum(s == "test" for s in split.values())
    if test_fraction > 0 and len(split) >= 2 and n_test == 0:
        ids = groups[0] or groups[1]
        split[ids[int(rng.integers(len(ids)))]] = "test"
    elif split and n_test == len(split):
        split[(drawn[1] or drawn[0])[-1]] = "train"
    return split
