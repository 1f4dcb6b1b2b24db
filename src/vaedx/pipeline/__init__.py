"""The end-to-end pipeline (the demo) and the layout of a pipeline folder."""
