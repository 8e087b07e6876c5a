"""Closed-loop load: workers that repeat an operation back to back for a fixed time.

Three kinds of worker, one result (:class:`Round`):

- :func:`run_threads` — threads of this process;
- :func:`run_asyncio` / :func:`run_tasks` — asyncio tasks on one event loop;
- :func:`run_processes` — forked processes, each running threads, for work the
  GIL would otherwise serialise. The processes are forked (not spawned), so an
  operation may use objects of the parent, such as an mlscale ``Cluster``,
  whose pools survive ``fork``.

Every worker builds its operation first (``op_factory(index)``, not timed);
then all start together and run for ``duration_s``. ``wall_s`` runs from that
common start until the last worker finished its last operation, so every
counted operation lies inside it. ``cpu_s`` is the client's CPU time in that
window: this process's (all threads) plus, for processes, each child's own.

An operation that raises stops the round, and the first error is raised once
every worker has stopped; with ``tolerate_errors=True`` errors are counted in
:attr:`Round.errors` instead and the workers carry on. A failed operation is not
an op and has no latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import multiprocessing
import pickle
import signal
import threading
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event as ProcessEvent
from typing import Any, Literal, Protocol, cast

from ..errors import MlscaleError
from .histogram import Histogram

__all__ = [
    "AsyncOp",
    "AsyncOpFactory",
    "Mode",
    "OpFactory",
    "Round",
    "run_asyncio",
    "run_processes",
    "run_tasks",
    "run_threads",
]

OpFactory = Callable[[int], Callable[[], object]]
"""Called once in each worker with its index (0..workers-1); returns the operation it repeats."""

AsyncOp = Callable[[], Awaitable[object]]
AsyncOpFactory = Callable[[int], AsyncOp | Awaitable[AsyncOp]]
"""Called once per task with its index; returns (or returns an awaitable of) the coroutine
function the task repeats."""

Mode = Literal["threads", "asyncio", "processes"]

# How long a child may take to exit after reporting, and to die after SIGTERM.
EXIT_GRACE_S = 5.0


class PerWallSecond:
    """``rate`` and ``cpu_per_s`` of a measurement that has ``ops``, ``wall_s``, ``cpu_s``."""

    __slots__ = ()
    ops: int
    wall_s: float
    cpu_s: float

    @property
    def rate(self) -> float:
        """Successful operations per second of wall time."""
        return self.ops / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_per_s(self) -> float:
        """Client CPU seconds per wall second (1.0 = one core kept busy)."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Round(PerWallSecond):
    """One timed round of a closed-loop workload.

    ``workers`` is the number of concurrent loops (threads, tasks, or
    processes x threads per process); ``histogram`` holds the latency of every
    successful operation, in seconds.
    """

    mode: Mode
    workers: int
    ops: int
    errors: int
    wall_s: float
    cpu_s: float
    histogram: Histogram
    processes: int = 1
    first_error: str | None = None

    def latency_ms(self, quantiles: tuple[float, ...] = (50, 95, 99)) -> dict[str, float]:
        """Latency percentiles and maximum in milliseconds (empty without ops)."""
        return self.histogram.summary_ms(quantiles)

    def as_dict(self) -> dict[str, Any]:
        """The round's figures as plain data (latencies summarised)."""
        out: dict[str, Any] = {
            "mode": self.mode,
            "workers": self.workers,
            "processes": self.processes,
            "ops": self.ops,
            "errors": self.errors,
            "wall_s": self.wall_s,
            "per_s": self.rate,
            "client_cpu_s": self.cpu_s,
            "client_cpu_per_s": self.cpu_per_s,
            "latency_ms": self.latency_ms(),
        }
        if self.first_error is not None:
            out["first_error"] = self.first_error
        return out


class _Flag(Protocol):
    def is_set(self) -> bool: ...


def _check(workers: int, duration_s: float) -> None:
    if workers < 1 or not duration_s > 0:
        raise ValueError(f"need workers >= 1 and duration_s > 0, got {workers=}, {duration_s=}")


# -- threads (also what each forked process runs) -----------------------------------


@dataclass
class _Tally:
    """What one worker saw; only that worker writes it until it is joined."""

    histogram: Histogram = field(default_factory=Histogram)
    ops: int = 0
    errors: int = 0
    first_error: BaseException | None = None


@dataclass
class _Outcome:
    """A thread round before it becomes a Round: window stamps on ``time.monotonic``."""

    tallies: list[_Tally]
    start: float
    end: float
    cpu_s: float
    fatal: BaseException | None

    @property
    def first_error(self) -> BaseException | None:
        return next((t.first_error for t in self.tallies if t.first_error is not None), None)


def _thread_round(
    make_op: OpFactory,
    threads: int,
    duration_s: float,
    *,
    tolerate_errors: bool,
    first_index: int = 0,
    gate: Callable[[], bool] | None = None,
    abort: _Flag | None = None,
) -> _Outcome:
    """Threads in a closed loop; ``gate`` runs once every thread is set up (False: abort),
    ``abort`` (an Event of any kind) ends the window early when set."""
    ready = threading.Barrier(threads + 1)
    go = threading.Event()
    stop = threading.Event()
    tallies = [_Tally() for _ in range(threads)]
    fatal: list[BaseException] = []  # setup errors, and what no flag may tolerate

    def work(i: int) -> None:
        tally = tallies[i]
        try:
            op = make_op(first_index + i)
            ready.wait()
        except threading.BrokenBarrierError:
            return
        except BaseException as exc:
            fatal.append(exc)
            stop.set()
            ready.abort()
            return
        go.wait()
        record, clock = tally.histogram.record, time.perf_counter
        while not stop.is_set():
            t0 = clock()
            try:
                op()
            except Exception as exc:
                tally.errors += 1
                if tally.first_error is None:
                    tally.first_error = exc
                if not tolerate_errors:
                    stop.set()
                continue
            except BaseException as exc:  # SystemExit and the like end the round
                fatal.append(exc)
                stop.set()
                return
            record(clock() - t0)
            tally.ops += 1

    pool = [
        threading.Thread(target=work, args=(i,), name=f"bench-{first_index + i}", daemon=True)
        for i in range(threads)
    ]
    for t in pool:
        t.start()
    start = cpu0 = 0.0
    try:
        with contextlib.suppress(threading.BrokenBarrierError):
            ready.wait()
        if not fatal and (gate is None or gate()):
            start, cpu0 = time.monotonic(), time.process_time()
            go.set()
            deadline = start + duration_s
            # Short waits, so an abort from outside is seen within 50 ms.
            while (left := deadline - time.monotonic()) > 0 and not stop.wait(min(left, 0.05)):
                if abort is not None and abort.is_set():
                    break
    finally:
        stop.set()
        ready.abort()
        go.set()
        for t in pool:
            t.join()
    end, cpu1 = time.monotonic(), time.process_time()
    if not start:
        start, end, cpu0, cpu1 = 0.0, 0.0, 0.0, 0.0
    outcome = _Outcome(tallies, start, end, cpu1 - cpu0, fatal[0] if fatal else None)
    if outcome.fatal is None and not tolerate_errors:
        outcome.fatal = outcome.first_error
    return outcome


def _round(
    mode: Mode, workers: int, tallies: list[_Tally], wall_s: float, cpu_s: float, processes: int
) -> Round:
    first = next((t.first_error for t in tallies if t.first_error is not None), None)
    return Round(
        mode=mode,
        workers=workers,
        ops=sum(t.ops for t in tallies),
        errors=sum(t.errors for t in tallies),
        wall_s=wall_s,
        cpu_s=cpu_s,
        histogram=Histogram.merged(t.histogram for t in tallies),
        processes=processes,
        first_error=None if first is None else repr(first),
    )


def run_threads(
    op_factory: OpFactory, threads: int, duration_s: float, *, tolerate_errors: bool = False
) -> Round:
    """Repeat an operation from ``threads`` threads for ``duration_s`` seconds.

    ``op_factory(i)`` runs in thread ``i`` before the common start. A
    KeyboardInterrupt stops the threads before it propagates.
    """
    _check(threads, duration_s)
    out = _thread_round(op_factory, threads, duration_s, tolerate_errors=tolerate_errors)
    if out.fatal is not None:
        raise out.fatal
    return _round("threads", threads, out.tallies, out.end - out.start, out.cpu_s, 1)


# -- asyncio ------------------------------------------------------------------------


async def run_tasks(
    op_factory: AsyncOpFactory, tasks: int, duration_s: float, *, tolerate_errors: bool = False
) -> Round:
    """Repeat a coroutine function from ``tasks`` tasks on the running loop for ``duration_s`` s.

    For use inside an event loop (e.g. one that owns async pools); see
    :func:`run_asyncio` for a loop of its own. An operation that never awaits
    starves the others, as it would in any asyncio program.
    """
    _check(tasks, duration_s)

    async def build(i: int) -> AsyncOp:
        made = op_factory(i)
        return await made if inspect.isawaitable(made) else made

    ops = await asyncio.gather(*(build(i) for i in range(tasks)))
    tallies = [_Tally() for _ in range(tasks)]
    stopped = False
    clock = time.perf_counter

    async def work(op: AsyncOp, tally: _Tally, deadline: float) -> None:
        nonlocal stopped
        record = tally.histogram.record
        while not stopped and clock() < deadline:
            t0 = clock()
            try:
                await op()
            except Exception as exc:
                tally.errors += 1
                if tally.first_error is None:
                    tally.first_error = exc
                stopped = stopped or not tolerate_errors
                continue
            record(clock() - t0)
            tally.ops += 1

    start, cpu0 = time.monotonic(), time.process_time()
    deadline = clock() + duration_s
    await asyncio.gather(*(work(op, t, deadline) for op, t in zip(ops, tallies, strict=True)))
    wall_s, cpu_s = time.monotonic() - start, time.process_time() - cpu0
    if not tolerate_errors:
        first = next((t.first_error for t in tallies if t.first_error is not None), None)
        if first is not None:
            raise first
    return _round("asyncio", tasks, tallies, wall_s, cpu_s, 1)


def run_asyncio(
    op_factory: AsyncOpFactory, tasks: int, duration_s: float, *, tolerate_errors: bool = False
) -> Round:
    """:func:`run_tasks` on a new event loop (``asyncio.run``); not from inside a loop."""
    return asyncio.run(run_tasks(op_factory, tasks, duration_s, tolerate_errors=tolerate_errors))


# -- processes ----------------------------------------------------------------------


def _portable(exc: BaseException) -> Any:
    """``exc`` if it survives pickling, else its text; the traceback travels as a note."""
    text = "".join(traceback.format_exception(exc))
    try:
        back = pickle.loads(pickle.dumps(exc))
    except Exception:
        return ("text", f"{type(exc).__name__}: {exc}", text)
    return ("exc", back, text)


def _unportable(payload: Any, pid: int) -> BaseException:
    kind, value, text = payload
    where = f"in benchmark process {pid}:\n{text}"
    exc = cast(BaseException, value) if kind == "exc" else None
    if exc is None:
        exc = MlscaleError(f"benchmark process {pid} failed: {value}")
    exc.add_note(where)
    return exc


def _child(
    conn: Connection,
    start: ProcessEvent,
    stop: ProcessEvent,
    make_op: OpFactory,
    first_index: int,
    threads: int,
    duration_s: float,
    tolerate_errors: bool,
) -> None:
    """A forked process's life: build ops, report ready, run the round, report, exit."""
    # Ctrl-C reaches the whole process group; the parent decides and stops us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:

        def gate() -> bool:
            conn.send(("ready", None))
            start.wait()
            return not stop.is_set()

        out = _thread_round(
            make_op,
            threads,
            duration_s,
            tolerate_errors=tolerate_errors,
            first_index=first_index,
            gate=gate,
            abort=stop,
        )
        if out.fatal is not None:
            conn.send(("error", _portable(out.fatal)))
            return
        first = out.first_error
        conn.send(
            (
                "done",
                {
                    "start": out.start,
                    "end": out.end,
                    "cpu_s": out.cpu_s,
                    "ops": sum(t.ops for t in out.tallies),
                    "errors": sum(t.errors for t in out.tallies),
                    "first_error": None if first is None else repr(first),
                    "histogram": Histogram.merged(t.histogram for t in out.tallies).to_dict(),
                },
            )
        )
    except BaseException as exc:
        with contextlib.suppress(Exception):
            conn.send(("error", _portable(exc)))
    finally:
        conn.close()


def _reap(procs: list[BaseProcess], grace_s: float) -> None:
    """Wait for every child; SIGTERM, then SIGKILL, those that outstay ``grace_s``."""
    deadline = time.monotonic() + grace_s
    for p in procs:
        p.join(max(0.0, deadline - time.monotonic()))
    for p in procs:
        if p.is_alive():
            p.terminate()
            p.join(EXIT_GRACE_S)
        if p.is_alive():
            p.kill()
            p.join()


def run_processes(
    op_factory: OpFactory,
    processes: int,
    threads_per_process: int,
    duration_s: float,
    *,
    tolerate_errors: bool = False,
    setup_timeout_s: float = 120.0,
) -> Round:
    """Repeat an operation from ``processes`` forked processes x ``threads_per_process``
    threads for ``duration_s`` seconds.

    ``op_factory(i)`` runs in the child, in its thread ``i`` (numbered across
    processes). All children start at one signal once every one is set up
    (within ``setup_timeout_s``); ``wall_s`` spans the earliest child start to
    the latest child end. ``cpu_s`` adds each child's CPU time in its window to
    this process's. Children are always reaped: on errors and Ctrl-C too.
    """
    _check(processes, duration_s)
    _check(threads_per_process, duration_s)
    ctx = multiprocessing.get_context("fork")
    start, stop = ctx.Event(), ctx.Event()
    procs: list[BaseProcess] = []
    conns: dict[Connection, BaseProcess] = {}
    results: dict[int, dict[str, Any]] = {}
    failures: list[BaseException] = []
    ok = False
    try:
        for n in range(processes):
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(
                target=_child,
                args=(
                    send,
                    start,
                    stop,
                    op_factory,
                    n * threads_per_process,
                    threads_per_process,
                    duration_s,
                    tolerate_errors,
                ),
                name=f"bench-proc-{n}",
                daemon=True,
            )
            proc.start()
            send.close()  # so a dead child reads as EOF, not silence
            procs.append(proc)
            conns[recv] = proc

        def collect(want: str, timeout_s: float | None) -> None:
            """Take one message from every child: ``want``, or an error that ends the round."""
            waiting = dict(conns)
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            while waiting and not failures:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    failures.append(
                        MlscaleError(
                            f"{len(waiting)} benchmark processes were not ready after "
                            f"{timeout_s:.0f} s"
                        )
                    )
                    return
                for ready in wait(list(waiting), left):
                    c = cast(Connection, ready)
                    proc = waiting.pop(c)
                    pid = proc.pid or 0
                    try:
                        kind, payload = c.recv()
                    except EOFError:
                        proc.join(1.0)
                        failures.append(
                            MlscaleError(
                                f"benchmark process {proc.pid} exited (code {proc.exitcode}) "
                                "without reporting"
                            )
                        )
                        continue
                    if kind == "error":
                        failures.append(_unportable(payload, pid))
                    elif kind != want:
                        failures.append(MlscaleError(f"benchmark process {pid} sent {kind!r}"))
                    elif kind == "done":
                        results[pid] = payload

        collect("ready", setup_timeout_s)
        cpu0 = time.process_time()
        if not failures:
            start.set()
            collect("done", None)
        cpu_parent = time.process_time() - cpu0
        ok = not failures
    finally:
        if not ok:
            stop.set()
        start.set()
        _reap(procs, EXIT_GRACE_S)
        for c in conns:
            c.close()
    if failures:
        raise failures[0]

    parts = list(results.values())
    wall_s = max(p["end"] for p in parts) - min(p["start"] for p in parts)
    histogram = Histogram.merged(Histogram.from_dict(p["histogram"]) for p in parts)
    first = next((p["first_error"] for p in parts if p["first_error"]), None)
    return Round(
        mode="processes",
        workers=processes * threads_per_process,
        ops=sum(p["ops"] for p in parts),
        errors=sum(p["errors"] for p in parts),
        wall_s=wall_s,
        cpu_s=cpu_parent + sum(p["cpu_s"] for p in parts),
        histogram=histogram,
        processes=processes,
        first_error=first,
    )
