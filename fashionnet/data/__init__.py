"""The data stages: the Fashion-MNIST catalog, fetching the raw files, IDX, the split rule and
the Parquet files every later stage reads."""
