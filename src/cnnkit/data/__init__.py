"""Data: image files, dataset formats and the built-in wafer maps, to normalized, augmented batches."""
