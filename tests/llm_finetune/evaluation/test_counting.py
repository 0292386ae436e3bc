import torch

from llm_finetune.evaluation.counting import ImageCount, accuracy_rows, confusion_rows, nms


def count(obj: str, asked: int, found: int, seed: int = 0) -> ImageCount:
    return ImageCount(object=obj, count=asked, prompt=f"{asked} {obj}", seed=seed, file="x.png", found=found,
                      scores=[0.9] * found)


def test_nms_keeps_one_box_per_object():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 10.5]], dtype=torch.float)
    scores = torch.tensor([0.5, 0.9, 0.8, 0.4])
    assert nms(boxes, scores, iou_threshold=0.3) == [1, 2]
    assert nms(boxes, scores, iou_threshold=1.0) == [1, 2, 0, 3]  # nothing merged


def test_confusion_rows_total_the_images_asked_for_each_n():
    counts = [count("apple", 1, 1), count("apple", 1, 2, seed=1), count("cat", 1, 0), count("cat", 1, 9, seed=1),
              count("apple", 3, 3), count("apple", 3, 3, seed=1), count("cat", 3, 2), count("cat", 3, 4, seed=1)]
    rows = confusion_rows(counts, asked=[1, 3])
    assert rows == [{"asked": 1, "0": 1, "1": 1, "2": 1, "3": 0, ">3": 1, "total": 4},
                    {"asked": 3, "0": 0, "1": 0, "2": 1, "3": 2, ">3": 1, "total": 4}]


def test_accuracy_per_object_and_n():
    counts = [count("apple", 2, 2), count("apple", 2, 1, seed=1), count("cat", 2, 2), count("cat", 2, 2, seed=1)]
    per_object, per_count = accuracy_rows(counts)
    assert per_object == [
        {"asked": 2, "object": "apple", "images": 2, "correct": 1, "accuracy": 0.5, "mean_found": 1.5},
        {"asked": 2, "object": "cat", "images": 2, "correct": 2, "accuracy": 1.0, "mean_found": 2.0}]
    assert per_count == [{"asked": 2, "images": 4, "correct": 3, "accuracy": 0.75, "mean_found": 1.75}]
