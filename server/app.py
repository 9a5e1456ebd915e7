"""The FastAPI application and `nncards serve`."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Response
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.routing import Match, Mount
from starlette.types import Scope

import nncards
from nncards.server import catalog, errors, graphs, runs
from nncards.server.body_limit import BodyLimit
from nncards.contract.catalog import Health
from nncards.server.service import RunService
from nncards.server.settings import Settings
from nncards.server.store import RunStore
from nncards.server.validator import ValidationService

API = "/api/v1"
WARM_UP_DELAY_SECONDS = 1.0


class EditorMount(Mount):
    """The editor's files at `/`, leaving every path under the API to the API's routes.

    A mount at `/` matches any path: an API path asked with a method it does not take would
    otherwise be answered by the static files (405 allowing GET and HEAD) rather than by the
    API's router (405 allowing the route's own methods).
    """

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] == "http" and scope["path"].startswith(API + "/"):
            return Match.NONE, {}
        return super().matches(scope)


def assets_dir() -> Path | None:
    """The `assets` folder: shipped inside the package, or beside it in a source checkout."""
    for candidate in (Path(str(files("nncards"))) / "assets", Path(nncards.__file__).resolve().parent.parent / "assets"):
        if candidate.is_dir():
            return candidate
    return None


@asynccontextmanager
async def lifespan(app: FastAPI):
    settings: Settings = app.state.settings
    store = RunStore(settings.data_dir)
    app.state.validator = ValidationService(settings.limits, settings.validation_cache_size, settings.validation_workers)
    app.state.runs = RunService(store, settings)
    app.state.runs.start()
    if settings.warm_up:
        # Importing TensorFlow keeps a core and the GIL busy for seconds: begin once the server
        # answers, so that its start and the editor's first catalogue request come first.
        asyncio.get_running_loop().call_later(WARM_UP_DELAY_SECONDS, app.state.validator.warm_up)
    try:
        yield
    finally:
        await app.state.runs.close()
        app.state.validator.close()
        store.close()


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    app = FastAPI(
        title="nncards", version=nncards.__version__, lifespan=lifespan,
        responses=errors.ANY_ERROR,
        generate_unique_id_function=lambda route: route.name,  # operationIds: the route functions' names
        description="Card catalogue, graph validation and graph execution for visual node editors.",
    )
    app.state.settings = settings
    app.state.catalogue = catalog.CatalogueDocuments()
    errors.install(app)
    for router in (catalog.router, graphs.router, runs.router):
        app.include_router(router, prefix=API, responses={422: errors.ERROR_RESPONSES[422]})

    @app.get(API + "/health", response_model=Health, tags=["service"])
    async def health() -> dict:
        """The server is up."""
        return {"status": "ok", "version": nncards.__version__}

    if settings.benchmark:
        static = bytes(len(app.state.catalogue.catalogue.body))

        @app.get(API + "/benchmark/static", include_in_schema=False)
        async def benchmark_static() -> Response:
            return Response(static, media_type="application/json")

    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins, allow_methods=["*"],
                           allow_headers=["*"], expose_headers=["ETag"])
    assets = assets_dir()
    if assets is not None:
        app.mount("/assets", StaticFiles(directory=assets), name="assets")
        if (assets / "editor").is_dir():
            app.router.routes.append(EditorMount("/", StaticFiles(directory=assets / "editor", html=True), name="editor"))
    return app


def serve(settings: Settings) -> None:
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(levelname)s: %(name)s: %(message)s")
    # Event streams stay open until their run ends: a stop waits a few seconds for them, not forever.
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info",
                timeout_graceful_shutdown=5)
