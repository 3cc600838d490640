"""Detection on an engine: LVIS-style box (and mask) AP, APr / APc / APf and per-category AP through
faster-coco-eval, on an LVIS / COCO / det-lt split as downloaded."""
from __future__ import annotations

from ltdeploy.datasets.det_sources import is_det_dataset, resolve_det_source
from ltdeploy.errors import DatasetError
from ltdeploy.evaluation.lvis_ap import MAX_DETS, SCORE_THRESHOLD, lvis_ap, lvis_ground_truth
from ltdeploy.evaluation.scores import Scores
from ltdeploy.metadata import ModelDescription
from ltdeploy.predictor import Predictor

COLUMNS = ("AP", "AP50", "AP75", "APr", "APc", "APf")
DEFAULT_SPLIT = "val"
PREDICTOR_OPTIONS = {"score_threshold": SCORE_THRESHOLD, "max_detections": MAX_DETS}


def engine_detections(predictor: Predictor, images: list[dict], paths: list[str]) -> list[dict]:
    """COCO-results detections of the engine, with the dataset's image and category ids."""
    results = []
    for info, res in zip(images, predictor.predict(paths)):
        if not hasattr(res, "objects"):
            raise DatasetError(f"{res.path}: {getattr(res, 'error', 'not a detection result')}")
        results += res.to_coco(info["id"])
    return results


def check_categories(class_ids: list[int], desc: ModelDescription, where: str) -> None:
    """The split must hold the model's categories, with the same ids."""
    if list(class_ids) != list(desc.class_ids):
        raise ValueError(f"{where}: its {len(class_ids)} category ids differ from the model's {desc.num_classes}")


def split_images(source, split: str) -> tuple[dict, list[dict], list[str]]:
    """(the split's JSON, its images in id order, their files)."""
    data = source.load(split)
    images = sorted(data["images"], key=lambda im: im["id"])
    return data, images, [source.image_path(split, im) for im in images]


def evaluate(predictor: Predictor, data: str, split: str) -> Scores:
    """Box (and mask) AP of the engine on the split; per-category box AP."""
    desc = predictor.description
    source = resolve_det_source(data)
    gt_json, images, paths = split_images(source, split)
    check_categories(sorted(c["id"] for c in gt_json["categories"]), desc, source.annotation_file(split))
    gt = lvis_ground_truth(gt_json, dict(zip(desc.class_ids, desc.class_counts)))
    dets = engine_detections(predictor, images, paths)
    box, per_cat = lvis_ap(gt, dets, "bbox", per_category=True)
    details = {"box": box, "detections": len(dets)}
    columns = {k: box[k] for k in COLUMNS}
    if "masks" in desc.output_names:
        details["mask"] = lvis_ap(gt, dets, "segm")
        columns.update({f"mask_{k}": details["mask"][k] for k in ("AP", "APr")})
    return Scores(desc, split, len(images), columns, [per_cat.get(i) for i in desc.class_ids], "box AP", details,
                  percent=True)


def image_classes(data: str, split: str, num_classes: int) -> tuple[list[str], list[set[int]]]:
    """Image files of a split and the class indices annotated in each (for class-balanced calibration)."""
    source = resolve_det_source(data)
    gt_json, images, paths = split_images(source, split)
    index = {cid: i for i, cid in enumerate(sorted(c["id"] for c in gt_json["categories"]))}
    shown: dict[int, set[int]] = {im["id"]: set() for im in images}
    for a in gt_json["annotations"]:
        shown[a["image_id"]].add(index[a["category_id"]])
    return paths, [shown[im["id"]] for im in images]


is_dataset = is_det_dataset
