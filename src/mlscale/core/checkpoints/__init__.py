"""The checkpoint store's pure half: names, chunking and hashing, manifests, where a
chunk lives, what retention drops, the SQL text, and the typed results. Nothing here
touches a network or a file system; :mod:`mlscale.stores.checkpoints` does the I/O."""
