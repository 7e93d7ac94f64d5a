"""The SDK's version, in a leaf module: cache keys and manifests read it without importing
the ``edge_sdk`` package root (whose lazy ``load()`` reaches the whole library)."""

__version__ = "0.1.0"
