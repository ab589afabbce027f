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


class NullableDateTime(_Nullable, fields.DateTime):
    pass


class NullableFloat(_Nullable, fields.Float):
    pass


class NullableList(_Nullable, fields.List):
    pass
