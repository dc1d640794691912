"""The DT REST client: Data Connectors, devices and event history, on aiohttp.

Mirrors the official ``disruptive`` SDK's resources asynchronously::

    from receiver.dt import Client, DataConnector

    async with Client.from_env() as client:      # DT_SERVICE_ACCOUNT_*, DT_API_URL, DT_TOKEN_URL
        for dc in await DataConnector.list_data_connectors(project_id, client=client):
            print(dc.data_connector_id, dc.status)

Errors are in `receiver.dt.errors` (re-exported here); event-type names in
`receiver.dt.event_types` (also here: ``receiver.dt.TEMPERATURE``).
"""

from receiver.dt.auth import Auth, ServiceAccountAuth, auth_from_env
from receiver.dt.client import DEFAULT_API_URL, Client, outcome_unknown
from receiver.dt.connector import (
    ACTIVE,
    HTTP_PUSH,
    STATUSES,
    SYSTEM_DISABLED,
    USER_DISABLED,
    DataConnector,
    HttpPushConfig,
    Metric,
)
from receiver.dt.devices import Device, EventHistory
from receiver.dt.errors import (
    AmbiguousConnectors,
    ApiError,
    BadGateway,
    BadRequest,
    ConfigurationError,
    Conflict,
    ConnectionFailed,
    DtApiError,
    Forbidden,
    GatewayTimeout,
    InternalServerError,
    NotFound,
    ServerError,
    ServiceUnavailable,
    Timeout,
    TooManyRequests,
    TransportError,
    Unauthorized,
    UnexpectedResponse,
    UnknownError,
)
from receiver.dt.event_types import (
    BATTERY_STATUS,
    CELLULAR_STATUS,
    CO2,
    CONNECTION_STATUS,
    CONTACT,
    DESK_OCCUPANCY,
    ETHERNET_STATUS,
    EVENT_TYPES,
    HUMIDITY,
    LABELS_CHANGED,
    MOTION,
    NETWORK_STATUS,
    OBJECT_PRESENT,
    OBJECT_PRESENT_COUNT,
    PRESSURE,
    PROBE_WIRE_STATUS,
    TEMPERATURE,
    TOUCH,
    TOUCH_COUNT,
    WATER_PRESENT,
)
from receiver.dt.retry import RetryPolicy

DATA_CONNECTOR_TYPES = DataConnector.DATA_CONNECTOR_TYPES

__all__ = [
    "ACTIVE",
    "BATTERY_STATUS",
    "CELLULAR_STATUS",
    "CO2",
    "CONNECTION_STATUS",
    "CONTACT",
    "DATA_CONNECTOR_TYPES",
    "DEFAULT_API_URL",
    "DESK_OCCUPANCY",
    "ETHERNET_STATUS",
    "EVENT_TYPES",
    "HTTP_PUSH",
    "HUMIDITY",
    "LABELS_CHANGED",
    "MOTION",
    "NETWORK_STATUS",
    "OBJECT_PRESENT",
    "OBJECT_PRESENT_COUNT",
    "PRESSURE",
    "PROBE_WIRE_STATUS",
    "STATUSES",
    "SYSTEM_DISABLED",
    "TEMPERATURE",
    "TOUCH",
    "TOUCH_COUNT",
    "USER_DISABLED",
    "WATER_PRESENT",
    "AmbiguousConnectors",
    "ApiError",
    "Auth",
    "BadGateway",
    "BadRequest",
    "Client",
    "ConfigurationError",
    "Conflict",
    "ConnectionFailed",
    "DataConnector",
    "Device",
    "DtApiError",
    "EventHistory",
    "Forbidden",
    "GatewayTimeout",
    "HttpPushConfig",
    "InternalServerError",
    "Metric",
    "NotFound",
    "RetryPolicy",
    "ServerError",
    "ServiceAccountAuth",
    "ServiceUnavailable",
    "Timeout",
    "TooManyRequests",
    "TransportError",
    "Unauthorized",
    "UnexpectedResponse",
    "UnknownError",
    "auth_from_env",
    "outcome_unknown",
]
