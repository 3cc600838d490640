"""Torch-free evaluation of deployed engines (`ltdeploy val`): each task's scores on a dataset split as it was
downloaded, computed the way training's evaluation computes them (the same metric code), side by side."""
