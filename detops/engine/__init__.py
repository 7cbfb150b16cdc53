"""The training and evaluation engine: functions, plus a few small state objects passed into them.

* ``loop``: ``train_one_epoch`` and ``evaluate``; ``fit``: the short driver behind ``detops train``.
* ``recipes``: each family's optimiser groups, LR schedule, augmentation pipeline, EMA and clipping.
* ``ema``, ``schedules``, ``checkpoint``, ``callbacks``, ``distributed``: the pieces ``fit`` wires up.
"""
