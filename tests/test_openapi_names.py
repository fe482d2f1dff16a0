"""Every declared shape has a name of its own: /openapi.json names each component by its class name, and
two classes of one name would silently become one (the second replacing the first)."""

from __future__ import annotations

from pydantic import BaseModel

import config.api  # noqa: F401  (every router, and so every shape, loaded)

PACKAGES = {"config", "chat", "openrouter", "memory_chat", "test_chat", "v1", "hfspaces", "simple", "options"}
PACKAGES |= {"ops", "webui", "gateway", "stores", "upstream", "core"}


def shapes(base: type[BaseModel]) -> list[type[BaseModel]]:
    found = []
    for sub in base.__subclasses__():
        found.append(sub)
        found += shapes(sub)
    return found


def test_it_names_every_shape_once() -> None:
    modules: dict[str, set[str]] = {}
    for shape in shapes(BaseModel):
        if shape.__module__.split(".")[0] in PACKAGES:
            modules.setdefault(shape.__name__, set()).add(shape.__module__)
    assert {name: found for name, found in modules.items() if len(found) > 1} == {}
