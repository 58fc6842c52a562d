"""The feed API's /docs and /redoc pages, served with their scripts from the hub itself.

FastAPI's default pages load Swagger UI and ReDoc from a CDN (and ReDoc Google Fonts), and
Swagger UI sends the spec's URL to validator.swagger.io for its badge: a consumer opening the
docs would tell outsiders which hub they use, and on an offline network the pages stay blank.
The assets come from the ``fastapi-offline`` package (Swagger UI 5, which reads the OpenAPI
3.1 FastAPI writes; the ``swagger-ui-bundle`` package ships 4.x, which cannot), mounted under
``/docs-static``; the pages are FastAPI's own HTML helpers pointed at them, with the validator
and web fonts off. Only the static files of that package are used, not its FastAPI subclass,
so the app stays a plain FastAPI.
"""
from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

STATIC_PREFIX = "/docs-static"
#: ReDoc's bundle draws the sidebar's "API docs by Redocly" logo from this CDN address; served
#: without it (an empty src loads nothing, and ReDoc hides the image when it fails).
REDOC_LOGO = "https://cdn.redoc.ly/redoc/logo-mini.svg"
REDOC_JS = "/redoc-static/redoc.standalone.js"


def _assets() -> Path:
    import fastapi_offline

    return Path(fastapi_offline.__file__).parent / "static"


def add_offline_docs(app: FastAPI, *, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve /docs (Swagger UI) and /redoc from local assets; create the app with docs_url=None, redoc_url=None."""
    app.mount(STATIC_PREFIX, StaticFiles(directory=_assets()), name="docs-static")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(docs_url, include_in_schema=False)
    def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=openapi_url, title=f"{app.title} — docs",
                                   swagger_js_url=f"{STATIC_PREFIX}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{STATIC_PREFIX}/swagger-ui.css",
                                   swagger_favicon_url=f"{STATIC_PREFIX}/favicon.png",
                                   swagger_ui_parameters={"validatorUrl": None})

    redoc_bundle = (_assets() / "redoc.standalone.js").read_text(encoding="utf-8").replace(REDOC_LOGO, "")

    @app.get(REDOC_JS, include_in_schema=False)
    def redoc_js() -> Response:
        return Response(redoc_bundle, media_type="text/javascript", headers={"Cache-Control": "public, max-age=3600"})

    @app.get(redoc_url, include_in_schema=False)
    def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=openapi_url, title=f"{app.title} — ReDoc",
                              redoc_js_url=REDOC_JS,
                              redoc_favicon_url=f"{STATIC_PREFIX}/favicon.png", with_google_fonts=False)
