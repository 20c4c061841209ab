"""YAML from files a user was handed (registries, model folders' zoo.yaml, --config): safe_load
without aliases.

An alias (``*name``) reuses a node, so nested aliases expand exponentially: a 600-byte file
("billion laughs") becomes gigabytes once a value is printed or walked. segkit's YAML files never
need them; :class:`AliasError` names the line so the caller can say it in one line.
"""
from __future__ import annotations

from typing import Any

import yaml


class AliasError(yaml.YAMLError):
    def __init__(self, line: int):
        super().__init__(f"YAML alias at line {line}: aliases (*name) are not allowed here "
                         "(nested ones expand exponentially); write the value out")
        self.line = line


class NoAliasLoader(yaml.SafeLoader):
    """yaml.SafeLoader whose composer stops at the first alias event."""

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            raise AliasError(self.peek_event().start_mark.line + 1)
        return super().compose_node(parent, index)


def load(text: str | bytes) -> Any:
    """yaml.safe_load, refusing aliases (AliasError, a yaml.YAMLError)."""
    return yaml.load(text, Loader=NoAliasLoader)  # noqa: S506 (a SafeLoader subclass)
