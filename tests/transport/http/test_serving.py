"""The embedded uvicorn server: a real HTTP server on loopback that leaves the loop alone."""

from __future__ import annotations

import asyncio
import time
from email.utils import parsedate_to_datetime

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from availability.transport.http.serving import serve_asgi


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


APP = Starlette(routes=[Route("/", hello)])


def pending_timers() -> int:
    # asyncio's BaseEventLoop keeps its timers in _scheduled (a heap), as it has since 3.4.
    return len(getattr(asyncio.get_running_loop(), "_scheduled"))  # noqa: B009


async def test_every_response_is_dated_and_the_server_keeps_no_timer() -> None:
    before = pending_timers()
    async with serve_asgi(APP) as server, httpx.AsyncClient(base_url=server.url) as client:
        # Any timer of its own would be pending now, between requests.
        assert pending_timers() <= before
        for _ in range(2):
            response = await client.get("/")
            assert response.text == "hello"
            dated = parsedate_to_datetime(response.headers["date"])
            assert abs(dated.timestamp() - time.time()) < 5
        assert response.headers.get_list("date") == [response.headers["date"]]  # just one


async def test_once_its_block_ends_the_server_answers_no_more() -> None:
    async with httpx.AsyncClient() as client:
        async with serve_asgi(APP) as server:
            assert (await client.get(server.url)).status_code == 200
        # Stopped: the port no longer answers.
        try:
            await client.get(server.url, timeout=2)
        except httpx.TransportError:
            pass
        else:
            raise AssertionError("the server still answers after its block ended")
