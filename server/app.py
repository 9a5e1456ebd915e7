"""The FastAPI application (`create_app`, its `lifespan`) and `nncards serve`."""

from __future__ import annotations

import asyncio
import logging
from contextlib import asynccontextmanager
from functools import partial
from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles
from starlette.routing import Match, Mount
from starlette.types import Scope

import nncards
from nncards.server import errors
from nncards.server.middleware import BodyLimit
from nncards.server.routers import catalog, graphs, health, runs
from nncards.server.services.catalogue import CatalogueDocuments
from nncards.server.services.runs import RunService
from nncards.server.services.store import RunStore
from nncards.server.services.validation import ValidationService
from nncards.server.services.workers import LocalExecutor
from nncards.server.settings import ExecutorKind, Settings

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
    """The services behind the dependencies, for as long as the server runs."""
    settings: Settings = app.state.settings
    store = RunStore(settings.data_dir)
    app.state.validation = ValidationService(settings.limits, settings.validation_cache_size,
                                             settings.validation_workers)
    if settings.executor == ExecutorKind.RAY:
        from nncards.server.services.cluster import RayExecutor  # Ray is imported only when asked for

        executor = partial(RayExecutor, address=settings.ray_address or "auto", limits=settings.limits,
                           max_runs=settings.ray_max_runs)
    else:
        executor = partial(LocalExecutor, size=settings.workers, threads=settings.worker_threads,
                           niceness=settings.run_niceness, limits=settings.limits)
    app.state.runs = RunService(store, settings.limits, executor)
    app.state.runs.start()
    if settings.warm_up:
        # Importing TensorFlow keeps a core and the GIL busy for seconds: begin once the server
        # answers, so that its start and the editor's first catalogue request come first.
        asyncio.get_running_loop().call_later(WARM_UP_DELAY_SECONDS, app.state.validation.warm_up)
    try:
        yield
    finally:
        await app.state.runs.close()
        app.state.validation.close()
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
    app.state.catalogue = CatalogueDocuments()  # no lifespan needed: a test may serve the catalogue alone
    errors.install(app)
    for router in (catalog.router, graphs.router, runs.router, health.router):
        app.include_router(router, prefix=API, responses={422: errors.ERROR_RESPONSES[422]})
    app.add_middleware(catalog.DocumentLane, prefix=API, routes=catalog.router.routes)  # innermost: added first
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
