"""The papers' training recipes as presets: one small TOML file each in this folder, read by
`train.py stage1|stage2 --recipe NAME` (or a path to such a file). A recipe sets defaults only: the command
line overrides it, and it overrides the task's defaults. `--recipe list` prints one a line."""
from __future__ import annotations

import os
import sys
from dataclasses import dataclass, fields

from ltdeploy.errors import LtDeployError
from training.config import Stage1Config, Stage2Config

if sys.version_info >= (3, 11):
    import tomllib
else:  # the same parser, as a package, before 3.11
    import tomli as tomllib

FOLDER = os.path.dirname(os.path.abspath(__file__))
STAGES = {"stage1": Stage1Config, "stage2": Stage2Config}
IMPORT_SETTINGS = {"input_size", "resize_short", "interpolation", "mean", "std", "seed", "workers", "batch_size"}


class RecipeError(LtDeployError):
    """A recipe that is missing, unreadable, or sets something its stage does not have."""


@dataclass(frozen=True)
class Recipe:
    """A preset: which task it trains, what it reproduces, and each stage's settings (config field names)."""

    name: str
    task: str
    description: str
    source: str  # where the settings come from (paper, repository, config file)
    stages: dict[str, dict]
    path: str

    def settings(self, stage: str) -> dict:
        """The settings this recipe gives one stage (`import` takes stage 1's eval preprocessing alone)."""
        if stage == "import":
            return {k: v for k, v in self.stages.get("stage1", {}).items() if k in IMPORT_SETTINGS}
        return dict(self.stages.get(stage, {}))


def recipe_names() -> list[str]:
    """The shipped recipes' names, sorted."""
    return sorted(f[:-5] for f in os.listdir(FOLDER) if f.endswith(".toml"))


def load_recipe(name: str) -> Recipe:
    """A shipped recipe by name, or a recipe file by path; every setting checked against its stage's config."""
    path = name if name.endswith(".toml") else os.path.join(FOLDER, f"{name}.toml")
    if not os.path.isfile(path):
        raise RecipeError(f"--recipe {name}: no such recipe; choose from {', '.join(recipe_names())} "
                          "(or give a .toml file)")
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RecipeError(f"--recipe {path}: not a readable TOML file ({exc})") from None
    missing = [k for k in ("task", "description", "source") if not isinstance(raw.get(k), str)]
    if missing:
        raise RecipeError(f"--recipe {path}: needs {', '.join(missing)} (text)")
    stages = {stage: raw.get(stage, {}) for stage in STAGES}
    for stage, settings in stages.items():
        known = {f.name for f in fields(STAGES[stage])}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise RecipeError(f"--recipe {path}: [{stage}] has no setting {', '.join(unknown)}")
    return Recipe(os.path.basename(path)[:-5], raw["task"], raw["description"], raw["source"], stages, path)


def recipe_lines() -> list[str]:
    """One line per shipped recipe: name, task, what it reproduces."""
    recipes = [load_recipe(n) for n in recipe_names()]
    width = max(len(r.name) for r in recipes)
    return [f"{r.name:<{width}}  {r.task:<14}  {r.description}" for r in recipes]
