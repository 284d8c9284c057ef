"""The dashboard's form posts: URL-encoded bodies, read without python-multipart."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import parse_qs

from fastapi import Depends, Request

__all__ = ["Form", "FormData"]

_MAX_FORM = 64 * 1024


class Form(dict[str, list[str]]):
    """Field name to values; an unreadable body is an empty form."""

    def one(self, name: str) -> str:
        values = self.get(name) or [""]
        return values[0]


async def _form(request: Request) -> Form:
    """A URL-encoded form body (the dashboard's forms post nothing else)."""
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return Form()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > _MAX_FORM:  # no form of the dashboard's is near this
            return Form()
    try:
        return Form(parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=200))
    except (UnicodeDecodeError, ValueError):
        return Form()


FormData = Annotated[Form, Depends(_form)]
