"""Drives claude-pool-server with the official MCP Python SDK, one operation at a time.

The integration tests (tests/support/python.rs) run this script as a real MCP client:

    mcp_driver.py --url http://127.0.0.1:PORT/mcp     # Streamable HTTP
    mcp_driver.py -- SERVER [ARGS...]                  # stdio: the SDK starts the server

It connects, prints one JSON line describing the session (`initialize`), then reads JSON
operations from stdin, one per line, and answers each with one JSON line on stdout:

    {"op": "tools"}                                       tools with their execution
    {"op": "call", "tool": T, "arguments": {...}}         a blocking tools/call; a result
                                                          that fails its outputSchema is
                                                          {"invalid": why}
    {"op": "call_task", "tool": T, "arguments": {...}, "ttl": ms}   a task-augmented call
    {"op": "get" | "result" | "cancel", "id": ID}         tasks/get, tasks/result, tasks/cancel
    {"op": "poll", "id": ID}                              tasks/get at the server's pollInterval
                                                          until terminal; every status seen
    {"op": "list", "cursor": C}                           one page of tasks/list
    {"op": "notices", "until": ID, "timeout": S}          the task status notifications
                                                          received (and forgotten), once one
                                                          for task ID has a terminal status
    {"op": "quit"}

A protocol error answers {"error": {"code", "message"}}. Each answer carries "ms", the
operation's wall time.
"""

import asyncio
import json
import os
import sys
import time
import warnings

from mcp import ClientSession, McpError, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client
from mcp.types import CallToolResult

warnings.simplefilter("ignore")  # the SDK marks its tasks API experimental


# Task status notifications as they arrive, and a signal for each.
NOTICES = []
ARRIVED = asyncio.Event()
TERMINAL = {"completed", "failed", "cancelled"}


async def on_message(message):
    root = getattr(message, "root", None)
    if getattr(root, "method", None) == "notifications/tasks/status":
        NOTICES.append(root.params.model_dump(mode="json", by_alias=True, exclude_none=True))
        ARRIVED.set()


async def notices(until, timeout):
    async def seen():
        while not any(n.get("taskId") == until and n.get("status") in TERMINAL for n in NOTICES):
            ARRIVED.clear()
            await ARRIVED.wait()

    try:
        await asyncio.wait_for(seen(), timeout)
    except asyncio.TimeoutError:
        return {"timeout": True, "notices": list(NOTICES)}
    got = list(NOTICES)
    NOTICES.clear()
    return {"notices": got}


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def run(session, op):
    kind = op["op"]
    x = session.experimental
    if kind == "tools":
        tools = await session.list_tools()
        return {"tools": [dump(t) for t in tools.tools]}
    if kind == "call":
        return dump(await session.call_tool(op["tool"], op.get("arguments", {})))
    if kind == "call_task":
        created = await x.call_tool_as_task(
            op["tool"], op.get("arguments", {}), ttl=op.get("ttl", 60000)
        )
        return dump(created)
    if kind == "get":
        return dump(await x.get_task(op["id"]))
    if kind == "result":
        return dump(await x.get_task_result(op["id"], CallToolResult))
    if kind == "cancel":
        return dump(await x.cancel_task(op["id"]))
    if kind == "poll":
        seen = []
        async for status in x.poll_task(op["id"]):
            seen.append(dump(status))
        return {"seen": seen}
    if kind == "list":
        return dump(await x.list_tasks(op.get("cursor")))
    if kind == "notices":
        return await notices(op["until"], op.get("timeout", 30))
    raise ValueError(f"unknown op {kind}")


async def serve(session, init):
    out = sys.stdout
    out.write(json.dumps({"initialize": dump(init)}) + "\n")
    out.flush()
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            return
        op = json.loads(line)
        if op["op"] == "quit":
            return
        start = time.perf_counter()
        try:
            answer = await run(session, op)
        except McpError as e:
            answer = {"error": {"code": e.error.code, "message": e.error.message}}
        except RuntimeError as e:
            # The SDK's own check of a result against the tool's outputSchema.
            answer = {"invalid": str(e)}
        answer["ms"] = (time.perf_counter() - start) * 1000
        out.write(json.dumps(answer) + "\n")
        out.flush()


async def main():
    args = sys.argv[1:]
    if args[:1] == ["--url"]:
        # The server's token, as a client's .mcp.json would send it.
        token = os.environ.get("CLAUDE_POOL_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else None
        async with streamablehttp_client(args[1], headers=headers) as (read, write, _):
            async with ClientSession(read, write, message_handler=on_message) as session:
                await serve(session, await session.initialize())
    elif args[:1] == ["--"]:
        params = StdioServerParameters(command=args[1], args=args[2:], env=dict(os.environ))
        async with stdio_client(params, errlog=sys.stderr) as (read, write):
            async with ClientSession(read, write, message_handler=on_message) as session:
                await serve(session, await session.initialize())
    else:
        sys.exit("usage: mcp_driver.py --url URL | -- SERVER [ARGS...]")


asyncio.run(main())
