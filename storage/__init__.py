"""Durable state of a node: one LevelDB per node, one store class per entity.

``keys`` lists every key prefix, ``kv`` is the backend seam (LevelDB or memory), and the
stores (``chunks``, ``keystore``, ...) build on it. Imports ``protocol`` only.
"""
