"""lossbench's Hydra config groups; installed as the package lossbench.conf (see pyproject.toml),
so that lossbench.config finds them with importlib.resources wherever lossbench is installed."""
