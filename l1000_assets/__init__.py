"""l1000_assets: biological read-across on LINCS L1000 as a Dagster asset platform."""

__version__ = "0.1.0"
