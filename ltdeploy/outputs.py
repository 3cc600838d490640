"""Where the files written for each input go: inputs from different folders never share an output name."""
from __future__ import annotations

import os
from collections import defaultdict


def output_stems(paths: list[str], out_dir: str) -> dict[str, str]:
    """For each input path, the path prefix of its output files under `out_dir`.

    The inputs' folders are mirrored below their common folder (`a/x.png b/x.png -o out` gives `out/a/x`
    and `out/b/x`; a single folder `photos/` gives `out/<subfolder>/<stem>`). Two inputs of one folder
    that share a stem keep their suffix apart (`x.png`, `x.jpg` give `x_png`, `x_jpg`).
    """
    absolute = {p: os.path.abspath(p) for p in paths}
    if not absolute:
        return {}
    base = os.path.commonpath([os.path.dirname(a) for a in absolute.values()])
    by_stem: dict[tuple[str, str], set[str]] = defaultdict(set)
    for a in absolute.values():
        by_stem[(os.path.dirname(a), os.path.splitext(os.path.basename(a))[0])].add(a)
    stems = {}
    for p, a in absolute.items():
        folder, name = os.path.split(a)
        stem, suffix = os.path.splitext(name)
        if len(by_stem[(folder, stem)]) > 1:
            stem = f"{stem}_{suffix.lstrip('.')}"
        stems[p] = os.path.normpath(os.path.join(out_dir, os.path.relpath(folder, base), stem))
    return stems
