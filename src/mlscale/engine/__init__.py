"""I/O against real servers: pools, catalog, inspection. Decisions come from core/."""
