"""lossbench: which output activation and cost function should a classifier use?

    python -m lossbench --help
"""

__version__ = "0.1.0"
