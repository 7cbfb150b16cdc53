"""The data half of detops: COCO layout discovery, synthetic data, validation, DVC versioning.

* ``layout``: find a COCO-format split under a root (our layout or the real COCO 2017 one) and load
  its annotation JSON with one-line errors.
* ``synth``: a deterministic synthetic COCO detection dataset (``detops data synth``).
* ``validate``: the Great Expectations suite (``detops data validate``).
* ``versioning``: DVC tracking, push and pull (``detops data version`` / ``detops data pull``).
"""
