"""The deep-net path: real networks beside the UFM.

``data`` (offline datasets and imbalance profiles), ``encoders`` (pure-JAX MLP, CNN, CIFAR ResNet-18), ``train``
(SC/CE training with per-epoch geometry), ``checkpoint`` (atomic checkpoints, resume), ``probes`` (geometry and
nearest-class-centre accuracy), ``compare`` (the trained geometry beside the certified UFM optimum).
"""
