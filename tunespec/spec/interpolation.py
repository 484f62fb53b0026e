"""`${NAME}` and `${NAME:-default}` in spec values, from the environment; `$${` is a literal `${`."""

from __future__ import annotations

import re
from collections.abc import Mapping

_VAR = re.compile(r"\$\$\{|\$\{([^}]*)\}|\$\{")
_VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def interpolate(value: str, env: Mapping[str, str]) -> tuple[str, list[tuple[str, str]]]:
    """`value` with its variables replaced, and a (message, hint) for each one that cannot be
    (those stay as written)."""
    problems: list[tuple[str, str]] = []

    def replace(match: re.Match[str]) -> str:
        if match.group(0) == "$${":
            return "${"
        body = match.group(1)
        if body is None:  # `${` with no `}` after it
            rest = match.string[match.end():]
            problems.append((f"unclosed variable reference ${{{rest[:20]}",
                             "close it with }, or write $${ for a literal ${"))
            return match.group(0)
        name, sep, default = body.partition(":-")
        if not _VAR_NAME.match(name):
            problems.append((f"invalid variable reference ${{{body}}}",
                             "use ${NAME} or ${NAME:-default}; write $${ for a literal ${"))
            return match.group(0)
        if name in env:
            return env[name]
        if sep:
            return default
        problems.append((f"environment variable {name} is not set",
                         f"export {name}=..., or write ${{{name}:-default}}"))
        return match.group(0)

    return _VAR.sub(replace, value), problems
