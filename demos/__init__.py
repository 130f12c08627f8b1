"""One module per app tab: UI, input checks and calls into the pipelines; no torch code."""
