"""The cache tier: codec, key builder, in-process L1 (and, alongside, the Redis L2).

Pure pieces live in their own modules so they can be tested without a server:
:mod:`.codec` (entries as bytes, never pickle), :mod:`.keys` (namespaced,
versioned, cluster-aware key names) and :mod:`.local` (the L1 tier).
"""
