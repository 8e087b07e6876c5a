"""The demo: each scaling claim measured on this machine."""
