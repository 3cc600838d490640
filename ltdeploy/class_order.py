"""Which output of a model is which dataset class: matched by name, so that a model trained with another class
order still scores the right class (`train.py import`'s weights, `ltdeploy calibrate`'s ONNX classifiers)."""
from __future__ import annotations

import os

from ltdeploy.errors import ModelError


def read_names(path: str) -> list[str]:
    """Class names, one a line (blank lines skipped)."""
    if not os.path.isfile(path):
        raise ModelError(f"{path}: no such class-names file")
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


def output_order(dataset: list[str], outputs: int, names: list[str] | None, owner: str = "the weights",
                 source: str = "--classes FILE") -> list[int]:
    """For each dataset class, the index of the model's output that scores it, given the outputs' class `names`
    (None: the dataset's order); ModelError naming what does not match: the counts, or names missing on either
    side. `owner` names the model in messages, `source` where the names came from."""
    if names is None:
        if outputs != len(dataset):
            raise ModelError(f"{owner} have {outputs} classes but the dataset has {len(dataset)}; pass --classes "
                             "FILE naming them in their order")
        return list(range(len(dataset)))
    if len(names) != outputs:
        raise ModelError(f"{source}: {len(names)} names but {owner} have {outputs} classes")
    if len(set(names)) != len(names):
        raise ModelError(f"{source}: a class is named twice")
    only_model = [n for n in names if n not in set(dataset)]
    only_data = [n for n in dataset if n not in set(names)]
    if only_model or only_data:
        parts = [f"{len(only_data)} dataset classes {owner} lack ({', '.join(only_data[:4])})" if only_data else "",
                 f"{len(only_model)} named there that the dataset lacks ({', '.join(only_model[:4])})"
                 if only_model else ""]
        raise ModelError(f"{source}: classes differ: {'; '.join(p for p in parts if p)}")
    index = {n: i for i, n in enumerate(names)}
    return [index[n] for n in dataset]


def weights_order(dataset: list[str], weights_outputs: int, names_file: str | None) -> list[int]:
    """`output_order` with the names read from --classes FILE (train.py import)."""
    return output_order(dataset, weights_outputs, None if names_file is None else read_names(names_file),
                        source=names_file or "--classes FILE")
