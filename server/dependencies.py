"""Every dependency of the routes, declared once.

Routers read only these names; what stands behind them lives on the application (made by the
lifespan in `app.py`), so a test swaps any of them with `app.dependency_overrides[getter]`.
The getters are `async` so that FastAPI calls them on the event loop rather than on a thread.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from nncards.server.services.catalogue import CatalogueDocuments
from nncards.server.services.interchange import InterchangeService
from nncards.server.services.runs import RunService
from nncards.server.services.validation import ValidationService
from nncards.server.settings import Settings


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_catalogue(request: Request) -> CatalogueDocuments:
    return request.app.state.catalogue


async def get_validation(request: Request) -> ValidationService:
    return request.app.state.validation


async def get_runs(request: Request) -> RunService:
    return request.app.state.runs


async def get_interchange(request: Request) -> InterchangeService:
    return request.app.state.interchange


SettingsDep = Annotated[Settings, Depends(get_settings)]
CatalogueDep = Annotated[CatalogueDocuments, Depends(get_catalogue)]
ValidationDep = Annotated[ValidationService, Depends(get_validation)]
RunServiceDep = Annotated[RunService, Depends(get_runs)]
InterchangeDep = Annotated[InterchangeService, Depends(get_interchange)]
