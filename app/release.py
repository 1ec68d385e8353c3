"""Release phase (Procfile `release:`): check the configuration and create missing tables."""

from .cli import open_store

if __name__ == "__main__":
    open_store()
