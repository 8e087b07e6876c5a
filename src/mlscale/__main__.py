import sys

from .cli.main import main

# Guarded: a process spawned by multiprocessing re-imports the main module (the
# registry's visibility measurer spawns its lookers) and must not run the CLI again.
if __name__ == "__main__":
    sys.exit(main())
