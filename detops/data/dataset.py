"""A detection dataset over any COCO-format annotation file and image directory.

A *sample* is the plain dict every transform in ``detops.data`` takes and returns:

* ``"image"``: uint8 numpy array [H, W, 3], RGB;
* ``"boxes"``: float32 numpy array [N, 4], xyxy in the pixels of ``"image"``;
* ``"labels"``: int64 numpy array [N], contiguous labels 0..C-1;
* ``"image_id"``: the annotation file's image id; ``"orig_size"``: (height, width) of the file on disk.

Category ids are mapped to contiguous labels in ascending id order (COCO's 1..90 with gaps -> 0..79);
``label_to_category_id`` maps back for COCO results. Crowd boxes and boxes of zero area after clipping
to the image are dropped from the training targets (the ground truth used for evaluation keeps them,
as COCOeval expects); images without objects are kept.

The annotation file must pass the checks ``detops data validate`` runs (``detops.data.checks``; a
failure is the same one-line ``DetopsError`` wording), and an image whose decoded size differs from
its declared ``width``/``height`` is refused when it is loaded, naming the file (boxes are annotated
against the declared size, so rescaling them would be a guess).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from detops.data.checks import check_annotations
from detops.errors import DetopsError
from detops.evaluation import load_json

Sample = dict[str, Any]
# A transform maps a sample to a new sample; ``rng`` is the only randomness it may use and
# ``dataset`` lets multi-image augmentations (mosaic, mixup) draw further raw samples.
Transform = Callable[..., Sample]


def _num(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def decode_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Read an image file as uint8 RGB [H, W, 3]; an unreadable file is a ``DetopsError``."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise DetopsError(f"cannot read image file {path}")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def decode_image_bytes(data: bytes, *, what: str = "data") -> np.ndarray:
    """Decode an encoded image (JPEG, PNG, ... as read from a file) to uint8 RGB [H, W, 3], with the
    same OpenCV flags as :func:`decode_image` (so a file and its bytes give the same pixels); bytes
    that are no image are a ``DetopsError`` naming ``what``."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    image = cv2.imdecode(buffer, cv2.IMREAD_COLOR) if buffer.size else None
    if image is None:
        raise DetopsError(f"{what}: cannot decode as an image ({len(data)} bytes)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


class CocoDetection(Dataset):
    """Images and targets of one COCO-format split.

    ``dataset[i]`` returns ``transform(sample, rng=..., dataset=self)`` (or the raw sample when
    ``transform`` is None). The generator is seeded from (``seed``, ``epoch``, ``i``), so the
    augmentation of an image depends neither on worker count nor on which worker loads it.
    """

    def __init__(
        self,
        annotation_file: str | os.PathLike[str],
        image_dir: str | os.PathLike[str],
        *,
        transform: Transform | None = None,
        seed: int = 0,
    ) -> None:
        self.annotation_file = Path(annotation_file)
        self.image_dir = Path(image_dir)
        if not self.image_dir.is_dir():
            raise DetopsError(f"image directory not found: {self.image_dir}")
        gt = load_json(self.annotation_file, what="annotations")
        if not isinstance(gt, dict):
            raise DetopsError(f"annotations {self.annotation_file}: expected a JSON object at top level")
        check_annotations(gt, file=self.annotation_file, image_dir=self.image_dir)
        gt.setdefault("annotations", [])
        self.coco: dict[str, Any] = gt
        self.transform = transform
        self.seed = seed
        self.epoch = 0

        cats = sorted(gt["categories"], key=lambda c: c["id"])
        if not cats:
            raise DetopsError(f"annotations {self.annotation_file}: field 'categories' is empty")
        self.label_to_category_id: list[int] = [int(c["id"]) for c in cats]
        self.category_id_to_label: dict[int, int] = {
            cid: i for i, cid in enumerate(self.label_to_category_id)
        }
        self.class_names: list[str] = [str(c.get("name", c["id"])) for c in cats]

        self.images: list[dict[str, Any]] = sorted(gt["images"], key=lambda im: im["id"])
        per_image: dict[Any, list[dict[str, Any]]] = {im["id"]: [] for im in self.images}
        for ann in gt["annotations"]:
            if ann.get("image_id") not in per_image:
                raise DetopsError(
                    f"annotations {self.annotation_file}: annotation {ann.get('id')} has image_id "
                    f"{ann.get('image_id')!r} not listed in 'images'"
                )
            if ann.get("category_id") not in self.category_id_to_label:
                raise DetopsError(
                    f"annotations {self.annotation_file}: annotation {ann.get('id')} has category_id "
                    f"{ann.get('category_id')!r} not listed in 'categories'"
                )
            per_image[ann["image_id"]].append(ann)
        self._targets = [self._parse_targets(im, per_image[im["id"]]) for im in self.images]

    @classmethod
    def from_root(
        cls, root: str | os.PathLike[str], *, split: str, transform: Transform | None = None, seed: int = 0
    ):
        """The ``split`` of a dataset root in our layout or the COCO 2017 layout (``detops.data.layout``)."""
        from detops.data.layout import find_split

        found = find_split(root, split)
        return cls(found.annotations, found.images, transform=transform, seed=seed)

    @property
    def num_classes(self) -> int:
        return len(self.label_to_category_id)

    def _parse_targets(
        self, image: dict[str, Any], anns: list[dict[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray]:
        w, h = float(image["width"]), float(image["height"])
        boxes, labels = [], []
        for ann in anns:
            if ann.get("iscrowd", 0):
                continue
            x, y, bw, bh = (float(v) for v in ann["bbox"])
            x1, y1 = min(max(x, 0.0), w), min(max(y, 0.0), h)
            x2, y2 = min(max(x + bw, 0.0), w), min(max(y + bh, 0.0), h)
            if x2 <= x1 or y2 <= y1:
                continue
            boxes.append((x1, y1, x2, y2))
            labels.append(self.category_id_to_label[ann["category_id"]])
        return (
            np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            np.asarray(labels, dtype=np.int64).reshape(-1),
        )

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        """Select the augmentation stream of ``epoch`` (call before iterating a loader over it)."""
        self.epoch = epoch

    def load_raw(self, index: int) -> Sample:
        """The decoded image and its training targets, untransformed (see the module docstring)."""
        info = self.images[index]
        image = decode_image(self.image_dir / info["file_name"])
        boxes, labels = self._targets[index]
        if image.shape[0] != info["height"] or image.shape[1] != info["width"]:
            raise DetopsError(
                f"image {self.image_dir / info['file_name']}: decoded size {image.shape[1]}x{image.shape[0]} "
                f"differs from the declared width x height {_num(info['width'])}x{_num(info['height'])} "
                f"(image id {info['id']} in {self.annotation_file}); check "
                "'decoded image size equals declared width/height' of `detops data validate --all-images`"
            )
        return {
            "image": image,
            "boxes": boxes.copy(),
            "labels": labels.copy(),
            "image_id": info["id"],
            "orig_size": (int(image.shape[0]), int(image.shape[1])),
        }

    def rng_for(self, index: int) -> np.random.Generator:
        """The generator that augments sample ``index`` in the current epoch."""
        return np.random.default_rng((self.seed, self.epoch, index))

    def __getitem__(self, index: int) -> Sample:
        sample = self.load_raw(index)
        if self.transform is None:
            return sample
        return self.transform(sample, rng=self.rng_for(index), dataset=self)


def collate(samples: list[Sample]) -> tuple[torch.Tensor, list[dict[str, Any]]]:
    """Samples already turned into tensors by ``ToTensor`` -> (images [B, 3, H, W], targets list).

    Every target dict has ``"boxes"`` float32 [N, 4] xyxy network-input pixels, ``"labels"`` int64
    [N], ``"image_id"`` and ``"orig_size"`` int64 [2] (height, width).
    """
    images = torch.stack([s["image"] for s in samples])
    targets = [
        {
            "boxes": s["boxes"],
            "labels": s["labels"],
            "image_id": s["image_id"],
            "orig_size": torch.as_tensor(s["orig_size"], dtype=torch.int64),
        }
        for s in samples
    ]
    return images, targets
