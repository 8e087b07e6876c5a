"""Fault injection and write ledgers on local HA clusters (issue 17).

- :mod:`.ledger`: what each write was told, and the pure accounting after a trial
  (lost acked rows, unknown outcomes reconciled, old-primary acks after the takeover,
  the writer gap, missing rows against the switch LSN);
- :mod:`.faults`: ``kill -9`` of a postmaster, a whole node killed or frozen, by PID;
- :mod:`.observe`: Patroni polled for the takeover and the old leader's rejoin;
- :mod:`.clients`: writer threads through libpq multi-host or an mlscale Cluster;
- :mod:`.trial`: one trial of a scenario, put together.

``mlscale bench failover`` (:mod:`mlscale.bench.failover`) runs trials of each.
"""
