"""The base of every response body of the REST API."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class ResponseBody(BaseModel):
    """A response body, validated from a use case's view (its attributes: operations/views.py and
    job_views.py). Every field is sent, defaults included, so the OpenAPI document marks every
    field required: clients (client/wire.py) may rely on each key being present."""

    model_config = ConfigDict(from_attributes=True, json_schema_serialization_defaults_required=True)
