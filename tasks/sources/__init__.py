"""Acquire and validate: the MovieLens files (download, safe extraction, parsing with the input rules) and
synthetic data in the same formats. Imports core."""
