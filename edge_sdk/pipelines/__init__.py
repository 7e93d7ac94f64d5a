"""Detector -> model -> post-processing chains, each built on runtime Sessions."""
