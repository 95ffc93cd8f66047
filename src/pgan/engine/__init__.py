"""Training: config -> objects (``build``), the trainer and its checkpoints, ``train`` and ``evaluate``
(the jobs ``pgan train`` and ``pgan eval`` run), feature extraction and the run folder.

The network is built by :mod:`pgan.models.build` and read back from a checkpoint by
:mod:`pgan.models.trained`, the dataset by :mod:`pgan.data.build`: inference needs nothing from here.
"""
