"""lossbench's named studies (`+experiment=NAME`, `study NAME`); installed as the package
lossbench.experiments (see pyproject.toml), found by lossbench.config with importlib.resources."""
