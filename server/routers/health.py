"""`GET /health`."""

from __future__ import annotations

from fastapi import APIRouter

import nncards
from nncards.contract.catalog import Health

router = APIRouter(tags=["service"])


@router.get("/health", response_model=Health)
async def health() -> Health:
    """The server is up."""
    return Health(status="ok", version=nncards.__version__)
