"""The HTTP service (``mlscale serve``): online features, feature pushes, prediction
and label logging over HTTP, with API keys and causal-token headers.

    from mlscale.serve import ServeSettings, create_app

    app = create_app(ServeSettings(config_path=".mlscale/mlscale.toml"))

Run it with ``mlscale serve`` (uvicorn, several worker processes); make keys with
``mlscale keys create --name NAME --scope read|write``.
"""

from .app import TOKEN_HEADER, create_app
from .keys import ApiKey, ApiKeyError, ApiKeys, KeyVerifier, NewKey
from .settings import ServeSettings

__all__ = [
    "TOKEN_HEADER",
    "ApiKey",
    "ApiKeyError",
    "ApiKeys",
    "KeyVerifier",
    "NewKey",
    "ServeSettings",
    "create_app",
]
