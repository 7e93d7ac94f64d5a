"""Serving bundles beyond one device: ``edge-sdk serve`` binds a Recognizer to NVIDIA Triton
Inference Server through PyTriton (:mod:`edge_sdk.serving.server`); ``edge_sdk.connect``
is its client (:mod:`edge_sdk.serving.client`); :mod:`edge_sdk.serving.codec` is the wire
format both share. Needs ``pip install 'edge-sdk[serve]'``; nothing here is imported by
``import edge_sdk``.
"""
