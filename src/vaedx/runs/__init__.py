"""The run folder: a model's config, weights, optimiser state and calibration, written and read here."""
