"""Which output of imported weights is which dataset class: matched by name, so that weights trained with
another class order still score the right class."""
from __future__ import annotations

import os

from ltdeploy.errors import ModelError


def read_names(path: str) -> list[str]:
    """Class names, one a line (blank lines skipped)."""
    if not os.path.isfile(path):
        raise ModelError(f"{path}: no such class-names file")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def weights_order(dataset: list[str], weights_outputs: int, names_file: str | None) -> list[int]:
    """For each dataset class, the index of the weights' output that scores it (ModelError naming what does
    not match: the counts, or names missing on either side)."""
    if names_file is None:
        if weights_outputs != len(dataset):
            raise ModelError(f"the weights have {weights_outputs} classes but the dataset has {len(dataset)}; "
                             "pass --classes FILE naming the weights' classes in their order")
        return list(range(len(dataset)))
    names = read_names(names_file)
    if len(names) != weights_outputs:
        raise ModelError(f"{names_file}: {len(names)} names but the weights have {weights_outputs} classes")
    if len(set(names)) != len(names):
        raise ModelError(f"{names_file}: a class is named twice")
    only_weights = [n for n in names if n not in set(dataset)]
    only_data = [n for n in dataset if n not in set(names)]
    if only_weights or only_data:
        parts = [f"{len(only_data)} dataset classes the weights lack ({', '.join(only_data[:4])})" if only_data else "",
                 f"{len(only_weights)} weights' classes the dataset lacks ({', '.join(only_weights[:4])})"
                 if only_weights else ""]
        raise ModelError(f"{names_file}: classes differ: {'; '.join(p for p in parts if p)}")
    index = {n: i for i, n in enumerate(names)}
    return [index[n] for n in dataset]
