"""Sandboxed Jinja2 rendering of prompt versions.

Templates are compiled once per config snapshot with Jinja2's ``ImmutableSandboxedEnvironment``
(a ``SandboxedEnvironment`` that also refuses to mutate lists and dicts) and ``StrictUndefined``:
a template may not reach Python internals (``__class__``, ``__globals__`` … raise
``SecurityError``), and an undefined name is an error, never an empty string. A request's
variables are checked against the declared ones before anything renders, so a missing or
mistyped variable is a 400 naming it, and a failed render is a 400 too: a partial prompt is
never sent upstream. Caller values are data: they are never parsed as template source.
"""

from __future__ import annotations

from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, UndefinedError, meta
from jinja2.sandbox import ImmutableSandboxedEnvironment, SecurityError

from gateway.prompts.errors import PromptError
from gateway.prompts.models import Variable, json_type_name, type_matches


def make_environment() -> ImmutableSandboxedEnvironment:
    """The Jinja2 environment prompt templates compile in (one per snapshot)."""
    return ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False,
                                         keep_trailing_newline=False)


def compile_template(env: ImmutableSandboxedEnvironment, source: str, declared: set[str]):
    """Compile ``source``; returns ``(template, used_names)``.

    Raises ``ValueError`` with a readable message on a syntax error or when the template
    uses a name that is neither declared nor a Jinja2 global (``range``, ``loop`` …).
    """
    try:
        ast = env.parse(source)
    except TemplateSyntaxError as exc:
        raise ValueError(f"template syntax error at line {exc.lineno}: {exc.message}") from None
    used = meta.find_undeclared_variables(ast)
    unknown = sorted(used - declared - set(env.globals))
    if unknown:
        raise ValueError(f"template uses undeclared variable(s) {', '.join(unknown)} "
                         "(declare them under `variables`)")
    return env.from_string(source), used


def bind_variables(declared: tuple[Variable, ...], given: dict[str, Any] | None, where: str,
                   param: str = "prompt.variables") -> dict[str, Any]:
    """The values a render uses: ``given`` checked against ``declared``, defaults filled in.

    Undeclared keys in ``given`` are ignored (an arm of an experiment may not use every
    variable the caller sends). Raises ``PromptError`` naming the first offending variable.
    """
    given = given or {}
    values: dict[str, Any] = {}
    missing = []
    for var in declared:
        value = given.get(var.name)
        if value is None:
            if var.default is not None:
                values[var.name] = var.default
            elif var.is_required:
                missing.append(var.name)
            continue
        if not type_matches(var.type, value):
            raise PromptError(f"{where}: variable {var.name!r} must be of type {var.type}, "
                              f"got {json_type_name(value)}", param=f"{param}.{var.name}")
        values[var.name] = value
    if missing:
        names = ", ".join(repr(m) for m in missing)
        raise PromptError(f"{where}: missing required variable{'s' if len(missing) > 1 else ''} {names}",
                          param=f"{param}.{missing[0]}")
    return values


def render_template(template, values: dict[str, Any], where: str, used: frozenset[str],
                    param: str = "prompt.variables") -> str:
    """Render one compiled template; every failure becomes a ``PromptError``."""
    try:
        return template.render(values)
    except SecurityError as exc:
        raise PromptError(f"{where}: the template sandbox blocked an unsafe operation ({exc})",
                          param=_param_for(exc, used, param)) from None
    except UndefinedError as exc:
        raise PromptError(f"{where}: template error: {exc}", param=_param_for(exc, used, param)) from None
    except (TemplateError, ArithmeticError, TypeError, ValueError, LookupError, OverflowError) as exc:
        raise PromptError(f"{where}: template error: {type(exc).__name__}: {exc}",
                          param=_param_for(exc, used, param)) from None


def _param_for(exc: Exception, used: frozenset[str], param: str) -> str:
    """Best guess of the variable an error is about: one used variable named in the message."""
    text = str(exc)
    named = [v for v in sorted(used) if f"'{v}'" in text]
    if len(named) == 1:
        return f"{param}.{named[0]}"
    if len(used) == 1:
        return f"{param}.{next(iter(used))}"
    return param
