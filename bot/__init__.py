"""WeCom community-operations bot for bank customer managers."""

__version__ = "0.1.0"
