"""The training registry recognises datasets and names synthetic sets without importing every task."""
import json
import sys

from conftest import SEG_CLASSES, run

from training.tasks import DATASET_CHECKS, SYNTHETIC_SETS, TASK_MODULES, find_task, get_task

PROBE = """
import json, sys
from training.tasks import find_task, synthetic_set
task = find_task({data!r})
synthetic_set("digits-lt")
print(json.dumps({{"task": task.name, "modules": sorted(sys.modules)}}))
"""


def test_registry_names_match_the_tasks():
    assert list(DATASET_CHECKS) == list(TASK_MODULES)
    for name in TASK_MODULES:
        made = {s for s, task in SYNTHETIC_SETS.items() if task == name}
        assert made == set(get_task(name).synthetic), name


def test_datasets_are_recognised(digits, tmp_path):
    from training.segmentation.synthetic import make_seg_lt

    make_seg_lt(str(tmp_path / "seg"), num_classes=SEG_CLASSES, n_train=8, n_val=4, imbalance=2)
    assert find_task(str(digits)).name == "classification"
    assert find_task(str(tmp_path / "seg")).name == "segmentation"
    assert find_task(str(tmp_path), annotations=True).name == "detection"


def test_a_classification_run_imports_no_other_task(digits):
    r = run(sys.executable, "-c", PROBE.format(data=str(digits)))
    out = json.loads(r.stdout.strip().split("\n")[-1])
    assert out["task"] == "classification"
    leaked = [m for m in out["modules"] if m.startswith(("training.detection", "training.segmentation", "torchvision"))]
    assert leaked == []
