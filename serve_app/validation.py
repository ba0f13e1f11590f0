"""Request bodies declared as pydantic models: each field's rules and limits in one place, a
refusal as one BadRequest whose reason says what to fix, and the JSON schema of each body for
the OpenAPI document (api/openapi.py).

What every body shares (the /v1 forms, the model download, the job submission):

- a string is stripped, and absent, null and blank are one: the field's default, or
  "X is required" when it has none (with the sentence of the field's `Required` mark);
- every field's refusal is a sentence built from the error and the field's own constraints
  (`Field(ge=..., le=..., max_length=...)`, a Literal's choices), so a limit is written once,
  where it is enforced, and the document shows the same number;
- one sentence per field that failed, joined with "; ".

Pure: no Ray, no HTTP.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any, ClassVar, Literal, Self, TypeVar

from annotated_types import Ge, Le
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic.fields import FieldInfo
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue, models_json_schema
from pydantic_core import ErrorDetails, core_schema

from serve_app.errors import BadRequest

__all__ = ["RequestModel", "RequestSchema", "Required", "describe", "request_schemas"]

SCHEMA_REF = "#/components/schemas/{model}"
_SHOWN_CHARS = 60


class Required:
    """The sentence a refusal says when this required field is absent (or null, or blank):
    `Annotated[str, Required("model is required: send ...")]`."""

    def __init__(self, reason: str) -> None:
        self.reason = reason

    def __repr__(self) -> str:
        return f"Required({self.reason!r})"


def describe(value: Any) -> str:
    """What a value of a body is, in the words of JSON (or of a form: a file)."""
    match value:
        case None:
            return "null"
        case bool():
            return "a boolean"
        case int() | float():
            return "a number"
        case str():
            return "a string"
        case list() | tuple():
            return "an array"
        case dict():
            return "an object"
    if hasattr(value, "filename"):
        return "a file"
    return type(value).__name__


def _shown(value: Any) -> str:
    """The value as a refusal quotes it, cut short when long."""
    text = repr(value)
    return text if len(text) <= _SHOWN_CHARS else f"{text[: _SHOWN_CHARS - 4]}...{text[-1]}"


def _number(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


_Bound = TypeVar("_Bound", Ge, Le)


def _bound(field: FieldInfo, kind: type[_Bound]) -> _Bound | None:
    """The field's last mark of type `kind` (its Ge or its Le), or None."""
    marks = [mark for mark in field.metadata if type(mark) is kind]
    return marks[-1] if marks else None


def _choices(annotation: Any) -> tuple[Any, ...]:
    """The values of the Literal inside an annotation (through Annotated, Optional and list)."""
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    return tuple(choice for argument in typing.get_args(annotation) for choice in _choices(argument))


class RequestModel(BaseModel):
    """A request body. Subclasses declare the fields; `from_body` validates or refuses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    body_name: ClassVar[str] = "the body"
    """How a refusal of an unknown field names what takes the fields."""

    @model_validator(mode="before")
    @classmethod
    def _blank_is_absent(cls, data: Any) -> Any:
        if not isinstance(data, Mapping):
            return data  # refused as not an object
        known = {field.alias or name for name, field in cls.model_fields.items()}
        cleaned = {}
        for name, value in data.items():
            if name in known:
                if isinstance(value, str):
                    value = value.strip()
                if value is None or value == "":
                    continue
            cleaned[name] = value
        return cleaned

    @classmethod
    def from_body(cls, data: Any) -> Self:
        """The body validated, or BadRequest with a sentence for each field to fix."""
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise BadRequest(cls.refusal(exc)) from None

    @classmethod
    def input_fields(cls) -> dict[str, FieldInfo]:
        """The fields by the name a body gives them (the alias, where there is one)."""
        return {field.alias or name: field for name, field in cls.model_fields.items()}

    @classmethod
    def refusal(cls, exc: ValidationError) -> str:
        """The reason of the refusal: a sentence for the first error of each field, in order."""
        sentences: dict[Any, str] = {}
        for error in exc.errors(include_url=False):
            key = error["loc"][0] if error["loc"] else None
            sentences.setdefault(key, cls._sentence(error))
        return "; ".join(sentences.values())

    @classmethod
    def _sentence(cls, error: ErrorDetails) -> str:
        kind, value, context = error["type"], error["input"], error.get("ctx") or {}
        if kind in ("value_error", "assertion_error"):  # the sentence of one of our validators
            return str(context["error"])
        if not error["loc"]:
            if kind == "model_type":
                required = [name for name, field in cls.input_fields().items() if field.is_required()]
                return f"the body must be a JSON object with at least {', '.join(required)}, not {describe(value)}"
            return f"the body: {error['msg']}"
        name = str(error["loc"][0])
        field = cls.input_fields().get(name)
        if kind == "extra_forbidden" or field is None:
            return f"unknown field {name!r}: {cls.body_name} takes {', '.join(cls.input_fields())}"
        low, high = _bound(field, Ge), _bound(field, Le)
        match kind:
            case "missing":
                marks = [mark for mark in field.metadata if isinstance(mark, Required)]
                return marks[0].reason if marks else f"{name} is required"
            case "string_type":
                return f"{name} must be a string, not {describe(value)}"
            case "literal_error" if isinstance(value, str):
                return f"{name} must be one of {', '.join(map(str, _choices(field.annotation)))}, not {_shown(value)}"
            case "literal_error":
                return f"{name} must be a string, not {describe(value)}"
            case "int_type" | "int_from_float":
                return f"{name} must be an integer, not {describe(value)}"
            case "int_parsing" | "int_parsing_size":
                span = f" from {low.ge} to {high.le}" if low and high else ""
                return f"{name} must be a whole number{span}, not {_shown(value)}"
            case "float_type" | "float_parsing" | "finite_number":
                span = f" between {_number(low.ge)} and {_number(high.le)}" if low and high else ""
                return f"{name} must be a number{span}, not {_shown(value)}"
            case "greater_than_equal" | "less_than_equal":
                shown = _number(value) if isinstance(value, int | float) else _shown(value).strip("'\"")
                if low and high:
                    return f"{name} must be between {_number(low.ge)} and {_number(high.le)}, not {shown}"
                bound = "at least" if "ge" in context else "at most"
                return f"{name} must be {bound} {_number(context.get('ge', context.get('le')))}, not {shown}"
            case "string_too_long":
                return f"{name} is {len(value)} characters; at most {context['max_length']} are allowed"
        return f"{name}: {error['msg']}"


class RequestSchema(GenerateJsonSchema):
    """The JSON schema of a request model as the API documents it: absent, null and blank are
    one (so no null alternatives and no null defaults), and no generated titles on fields."""

    def nullable_schema(self, schema: core_schema.NullableSchema) -> JsonSchemaValue:
        return self.generate_inner(schema["schema"])

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> JsonSchemaValue:
        json_schema = super().default_schema(schema)
        if json_schema.get("default", ...) is None:
            del json_schema["default"]
        return json_schema

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False


def request_schemas(*models: type[RequestModel]) -> dict[str, JsonSchemaValue]:
    """The JSON schema of each model, by its class name, for an OpenAPI document's
    components.schemas (references between them point there)."""
    _, schemas = models_json_schema(
        [(model, "validation") for model in models], ref_template=SCHEMA_REF, schema_generator=RequestSchema, by_alias=True
    )
    return schemas.get("$defs", {})
