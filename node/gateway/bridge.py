"""The node's one asyncio event loop, in its own thread, and the two ways across.

trio owns the main thread; aiortc (WebRTC) is written for asyncio. Everything asyncio
lives behind this module: the loop runs in a daemon thread started by :meth:`Bridge.run`
inside the node's nursery, and nothing else in the node imports asyncio.

- trio to asyncio: ``await bridge.run_asyncio(factory)`` runs ``factory()`` (a coroutine)
  on the loop and waits for it without blocking trio; cancelling the trio side cancels the
  asyncio task.
- asyncio to trio: ``await bridge.run_trio(fn, *args)``, awaited on the loop, runs the trio
  async function ``fn`` in the bridge's trio nursery; cancelling the asyncio side cancels
  the trio task.

Both directions hand results over with the event loops' own thread-safe calls
(``call_soon_threadsafe`` and ``TrioToken.run_sync_soon``); no thread ever blocks on the
other loop.
"""

import asyncio
import concurrent.futures
import contextlib
import logging
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

import trio

log = logging.getLogger("toktok.gateway")

T = TypeVar("T")
STOP_S = 5.0
"""How long stopping waits for the asyncio side's closing work (peer connections)."""


def _finish_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """After the loop stopped: cancel what still runs there (aiortc's transports, requests
    being served) and let it unwind, so that nothing is left half-open."""
    pending = asyncio.all_tasks(loop)
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())


class BridgeClosed(Exception):
    """The bridge is not running (not started yet, or stopped)."""


class Bridge:
    """An asyncio loop in a thread, tied to the trio run that started it."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._nursery: trio.Nursery | None = None
        self._on_stop: list[Callable[[], Coroutine[Any, Any, None]]] = []

    @property
    def running(self) -> bool:
        return self._loop is not None and self._nursery is not None

    def on_stop(self, factory: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``factory()`` on the loop when the bridge stops (before the loop ends)."""
        self._on_stop.append(factory)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Start the loop's thread, serve until cancelled, then stop the loop."""
        loop = asyncio.new_event_loop()
        ready = threading.Event()

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(ready.set)
            try:
                loop.run_forever()
                _finish_tasks(loop)
            finally:
                loop.close()

        thread = threading.Thread(target=serve, name="toktok-asyncio", daemon=True)
        thread.start()
        await trio.to_thread.run_sync(ready.wait)
        try:
            async with trio.open_nursery() as nursery:
                self._loop, self._token, self._nursery = (
                    loop,
                    trio.lowlevel.current_trio_token(),
                    nursery,
                )
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            with trio.CancelScope(shield=True):
                await trio.to_thread.run_sync(self._stop_loop, loop, thread)
            self._loop = None

    def _stop_loop(self, loop: asyncio.AbstractEventLoop, thread: threading.Thread) -> None:
        """In a worker thread: the closing work, then the loop's end."""

        async def closing() -> None:
            for factory in self._on_stop:
                try:
                    await factory()
                except Exception as exc:  # the top of a closing task: log, go on
                    log.warning("bridge stop task failed", extra={"error": repr(exc)})

        future = asyncio.run_coroutine_threadsafe(closing(), loop)
        try:
            future.result(STOP_S)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError):
            log.warning("asyncio side did not close in time", extra={"seconds": STOP_S})
        loop.call_soon_threadsafe(loop.stop)
        thread.join(STOP_S)

    async def run_asyncio(self, factory: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """From trio: run ``factory()`` on the loop, return its result or raise its error.
        Raises BridgeClosed when the bridge is not running."""
        loop, token = self._loop, self._token
        if loop is None or token is None or not self.running:
            raise BridgeClosed("the asyncio bridge is not running")
        done = trio.Event()
        coroutine = factory()
        try:
            future = asyncio.run_coroutine_threadsafe(coroutine, loop)
        except RuntimeError as exc:  # the loop closed meanwhile
            coroutine.close()
            raise BridgeClosed("the asyncio bridge has stopped") from exc

        def wake(_future: object) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        future.add_done_callback(wake)
        try:
            await done.wait()
        except trio.Cancelled:
            future.cancel()
            raise
        return future.result()

    async def run_trio(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """From asyncio (awaited on the loop): run the trio function ``fn(*args)`` in the
        bridge's nursery. Raises BridgeClosed when the bridge is stopping."""
        token, nursery = self._token, self._nursery
        if token is None or nursery is None:
            raise BridgeClosed("the asyncio bridge is not running")
        loop = asyncio.get_running_loop()
        result: asyncio.Future[T] = loop.create_future()
        scope = trio.CancelScope()

        def settle(value: T | None, error: BaseException | None) -> None:
            if result.done():
                return
            if error is not None:
                result.set_exception(error)
            else:
                result.set_result(value)  # type: ignore[arg-type]

        def hand_over(value: T | None, error: BaseException | None) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits
                loop.call_soon_threadsafe(settle, value, error)

        async def task() -> None:
            try:
                with scope:
                    try:
                        value = await fn(*args)
                    except Exception as exc:
                        hand_over(None, exc)
                        return
                    hand_over(value, None)
                    return
            finally:
                # Cancelled, by the asyncio side or because the bridge stops: the waiter
                # hears it (a settled future ignores this).
                hand_over(None, BridgeClosed("cancelled"))

        def start() -> None:
            try:
                if nursery is not self._nursery:
                    raise RuntimeError("the bridge has stopped")
                nursery.start_soon(task)
            except RuntimeError:  # the nursery is closing: an error here would end the run
                hand_over(None, BridgeClosed("stopping"))

        try:
            token.run_sync_soon(start)
        except trio.RunFinishedError as exc:
            raise BridgeClosed("the trio run has ended") from exc
        try:
            return await result
        except asyncio.CancelledError:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(scope.cancel)
            raise
