"""The ``mlscale`` command: thin click commands over the library."""
