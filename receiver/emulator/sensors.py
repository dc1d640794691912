"""Virtual sensors: the devices of a project producing DT's events on DT's rhythm.

`VirtualSensors` plays a `schedule.SensorPlan` in real time, `speed` times faster than life
(or as fast as gives `rate` events per second overall), and appends every event to its
device's history with `EmulatorState.emit` — from where the pusher takes it. Event times
are the real time of emission. ``VirtualSensors(state, rate=50)`` makes about 50 events a
second; ``speed=1`` is DT's own pace (a heartbeat per sensor every ~15 minutes).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Callable

from receiver.emulator.schedule import Rhythm, SensorPlan, events_per_second
from receiver.emulator.state import EmulatorState
from receiver.emulator.timestamps import format_rfc3339

__all__ = ["Rhythm", "SensorPlan", "VirtualSensors", "events_per_second"]


class VirtualSensors:
    """Plays a `SensorPlan` against `state` in real time until `stop()` (or `limit` events).

    `speed` is how many virtual seconds pass per real second; `rate` (events per second
    overall) sets it instead. Counts what it emitted in `emitted` (by event type).
    """

    def __init__(
        self,
        state: EmulatorState,
        *,
        project_id: str | None = None,
        seed: int | None = None,
        rhythm: Rhythm | None = None,
        speed: float | None = None,
        rate: float | None = None,
        limit: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if speed is not None and rate is not None:
            raise ValueError("give speed or rate, not both")
        if (speed is not None and speed <= 0) or (rate is not None and rate <= 0):
            raise ValueError("speed and rate must be positive")
        self.state = state
        self.project_id = project_id or state.project_id
        devices = list(state.project(self.project_id).devices.values())
        self.plan = SensorPlan(devices, rng=random.Random(seed), rhythm=rhythm)
        if rate is not None:
            speed = rate / events_per_second(devices, rhythm)
        self.speed = speed or 1.0
        self.limit = limit
        self.emitted: Counter[str] = Counter()
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    @property
    def total(self) -> int:
        return sum(self.emitted.values())

    @property
    def done(self) -> bool:
        """Whether it stopped by itself (`limit` reached)."""
        return self._task is not None and self._task.done()

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        for tick in self.plan:
            wait = started + tick.at / self.speed - loop.time()
            await asyncio.sleep(max(wait, 0.0))  # 0 still yields to the loop
            now = self._clock()
            when = format_rfc3339(now)
            for reading in tick.readings:
                if self.limit is not None and self.total >= self.limit:
                    return
                self.state.emit(reading.device_id, reading.event_type, reading.data(when), now)
                self.emitted[reading.event_type] += 1
