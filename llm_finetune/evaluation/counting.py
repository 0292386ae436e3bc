"""Counting objects in generated images with a zero-shot detector (OWLv2 through transformers): boxes scoring above
a threshold, overlapping boxes merged (non-maximum suppression), counted per image; accuracy per N and object, the
asked-vs-found confusion table, and an image grid captioned with both counts."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path

from pydantic import BaseModel

from llm_finetune.fingerprint import build_once, fingerprint, name_or_path_key
from llm_finetune.inference.text_to_image import ImageRecord, ImageSet
from llm_finetune.recipes.text_to_image import DetectorSpec

COUNTS_FILE = "counts.json"


class ImageCount(ImageRecord):
    found: int
    scores: list[float]  # of the boxes counted, highest first


class CountingResult(BaseModel):
    detector: str
    counts: list[ImageCount]
    seconds: float


def nms(boxes, scores, iou_threshold: float) -> list[int]:
    """Indices of the boxes kept by greedy non-maximum suppression (highest score first), boxes as x0, y0, x1, y1."""
    import torch

    order = torch.argsort(scores, descending=True).tolist()
    keep: list[int] = []
    for i in order:
        if all(_iou(boxes[i], boxes[j]) <= iou_threshold for j in keep):
            keep.append(i)
    return keep


def _iou(a, b) -> float:
    w = max(0.0, float(min(a[2], b[2]) - max(a[0], b[0])))
    h = max(0.0, float(min(a[3], b[3]) - max(a[1], b[1])))
    inter = w * h
    union = float((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1])) - inter
    return inter / union if union > 0 else 0.0


def count_objects(images: ImageSet, detector_path: str, spec: DetectorSpec, out_root: str | Path) -> CountingResult:
    """Each image's count of its own object, kept under a fingerprint of images, detector and settings."""
    key = fingerprint("counting-v1", Path(images.folder).name, name_or_path_key(detector_path), spec)
    out = Path(out_root) / key
    with build_once(out) as needed:
        if needed:
            result = _count(images, detector_path, spec)
            (out / COUNTS_FILE).write_text(result.model_dump_json(indent=1))
    return CountingResult.model_validate_json((out / COUNTS_FILE).read_text())


def _count(images: ImageSet, detector_path: str, spec: DetectorSpec) -> CountingResult:
    import torch
    from PIL import Image
    from transformers import AutoModelForZeroShotObjectDetection, AutoProcessor

    device = "cuda" if torch.cuda.is_available() else "cpu"
    processor = AutoProcessor.from_pretrained(detector_path)
    model = AutoModelForZeroShotObjectDetection.from_pretrained(detector_path).to(device).eval()
    counts = []
    start = time.perf_counter()
    for i in range(0, len(images.records), spec.batch_size):
        batch = images.records[i : i + spec.batch_size]
        pictures = [Image.open(images.path(r)).convert("RGB") for r in batch]
        queries = [[spec.query_template.replace("{object}", r.object)] for r in batch]
        inputs = processor(text=queries, images=pictures, return_tensors="pt").to(device)
        with torch.inference_mode():
            outputs = model(**inputs)
        # OWLv2 pads each image to a square at the bottom/right: boxes are relative to that square.
        sides = [(max(p.size), max(p.size)) for p in pictures]
        detections = processor.post_process_grounded_object_detection(
            outputs, threshold=spec.score_threshold, target_sizes=sides)
        for record, found in zip(batch, detections):
            keep = nms(found["boxes"], found["scores"], spec.nms_iou)
            scores = sorted((round(float(found["scores"][k]), 4) for k in keep), reverse=True)
            counts.append(ImageCount(**record.model_dump(), found=len(keep), scores=scores))
    return CountingResult(detector=detector_path, counts=counts, seconds=round(time.perf_counter() - start, 2))


def accuracy_rows(counts: list[ImageCount]) -> tuple[list[dict], list[dict]]:
    """(per object and N, per N): images, how many had exactly N found, accuracy, mean found."""

    def rows(key) -> list[dict]:
        groups: dict[tuple, list[ImageCount]] = defaultdict(list)
        for c in counts:
            groups[key(c)].append(c)
        return [{**dict(zip(("asked", "object"), k)), "images": len(g), "correct": sum(c.found == c.count for c in g),
                 "accuracy": round(sum(c.found == c.count for c in g) / len(g), 4),
                 "mean_found": round(sum(c.found for c in g) / len(g), 3)} for k, g in sorted(groups.items())]

    return rows(lambda c: (c.count, c.object)), rows(lambda c: (c.count,))


def confusion_rows(counts: list[ImageCount], asked: list[int]) -> list[dict]:
    """Asked N (rows) x found (columns 0..max N, then '>max'); each row's total is the images asked for N."""
    top = max(asked)
    columns = [str(n) for n in range(top + 1)] + [f">{top}"]
    table = {n: Counter() for n in sorted(asked)}
    for c in counts:
        table[c.count][str(c.found) if c.found <= top else f">{top}"] += 1
    return [{"asked": n, **{col: table[n][col] for col in columns}, "total": sum(table[n].values())} for n in table]


def image_grid(images: ImageSet, counts: list[ImageCount], thumbnail: int):
    """One row per object, one column per (N, seed); each image captioned 'asked N / found k' (green when equal)."""
    from PIL import Image, ImageDraw

    objects = list(dict.fromkeys(c.object for c in counts))
    columns = sorted({(c.count, c.seed) for c in counts})
    caption, label = 14, max(60, 7 * max(len(o) for o in objects))
    grid = Image.new("RGB", (label + thumbnail * len(columns), (thumbnail + caption) * len(objects)), "white")
    draw = ImageDraw.Draw(grid)
    for c in counts:
        row, col = objects.index(c.object), columns.index((c.count, c.seed))
        x, y = label + col * thumbnail, row * (thumbnail + caption)
        grid.paste(Image.open(images.path(c)).convert("RGB").resize((thumbnail, thumbnail)), (x, y))
        draw.text((x + 2, y + thumbnail), f"asked {c.count} / found {c.found}",
                  fill="green" if c.found == c.count else "red")
    for row, obj in enumerate(objects):
        draw.text((2, row * (thumbnail + caption) + thumbnail // 2), obj, fill="black")
    return grid
