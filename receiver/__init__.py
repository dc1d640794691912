"""dtpush: receive Disruptive Technologies Data Connector pushes and hand events to handlers.

The public API for handler authors::

    from receiver import Event, handler

    @handler("temperature")
    async def record(event: Event) -> None: ...
"""

from importlib.metadata import PackageNotFoundError, version

from receiver.events import Event
from receiver.registry import Handler, handler

try:
    __version__ = version("dtpush")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["Event", "Handler", "__version__", "handler"]
