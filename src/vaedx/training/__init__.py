"""Training: beta-VAE losses, memmap batches, the loop, DDP set-up, PCA fitting and ``train()``.

The run folder it writes (config, checkpoints, calibration) is defined one layer down, in ``vaedx.runs``.
"""
