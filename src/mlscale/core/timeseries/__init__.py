"""The metrics store's pure half (no I/O): points as columns, the InfluxDB line
protocol parser, measurements and their tables' SQL, and aggregates merged exactly
across shard groups. The store is :mod:`mlscale.stores.metrics`; not to be confused
with :mod:`mlscale.metrics`, mlscale's own Prometheus counters."""
