"""Model fields the API document needs beyond flask-restx's own."""

from __future__ import annotations

from typing import Any

from flask_restx import fields


class _Nullable(fields.Raw):
    """A field that may be null: Swagger 2.0 has no `nullable`, so it says `x-nullable`."""

    def schema(self) -> dict[str, Any]:
        return {**super().schema(), "x-nullable": True}


class NullableString(_Nullable, fields.String):
    pass


class NullableInteger(_Nullable, fields.Integer):
    pass


class NullableBoolean(_Nullable, fields.Boolean):
    pass


class NullableDateTime(_Nullable, fields.DateTime):
    pass


class NullableFloat(_Nullable, fields.Float):
    pass


class NullableList(_Nullable, fields.List):
    pass


class NullableNested(fields.Nested):
    """A nested model that may be null.

    Swagger 2.0 ignores anything beside a ``$ref``, so the reference goes in an
    ``allOf`` of one, which may carry ``x-nullable`` (generated clients then
    accept null).
    """

    def __init__(self, model: Any, **kwargs: Any) -> None:
        super().__init__(model, allow_null=True, skip_none=False, **kwargs)

    def schema(self) -> dict[str, Any]:
        schema: dict[str, Any] = super().schema()
        ref = schema.pop("$ref", None)
        if ref is not None:
            schema["allOf"] = [{"$ref": ref}]
        return {**schema, "x-nullable": True}
