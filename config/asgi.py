"""ASGI entry point: `config.asgi:application` (uvicorn, `make run`, the container).

Settings load first (a bad one stops start-up with one line), then the edge wraps Django; static files
are answered by ServeStatic before either.
"""

from __future__ import annotations

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

import django

django.setup(set_prefix=False)

from django.conf import settings  # noqa: E402
from servestatic import ServeStaticASGI  # noqa: E402

from config.edge import Edge, django_handler  # noqa: E402

application = ServeStaticASGI(Edge(django_handler()), root=settings.STATIC_ROOT, prefix=settings.STATIC_URL)
