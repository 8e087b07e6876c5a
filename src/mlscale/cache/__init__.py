"""The cache tier: an in-process L1 and a Redis L2 kept coherent with writes.

See ARCHITECTURE.md decision 8.
"""
