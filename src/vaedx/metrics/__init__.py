"""Numbers from predictions: ranking and overlap metrics, bootstrap intervals, thresholds, curves."""
