"""The project's own AppConfig: what must be true of Django before the first request."""

from __future__ import annotations

from django.apps import AppConfig


class GatewayConfig(AppConfig):
    name = "config"
    label = "gateway"
    verbose_name = "LLM Chat Gateway"

    def ready(self) -> None:
        from config import edge

        edge.prepare_django()
