"""`pointsman agent run NAME "..."` (each step shown as it happens),
`pointsman agent ls`, `pointsman tools ls` and `pointsman tools calls`."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    agent = sub.add_parser("agent", help="agents run by the gateway").add_subparsers(
        dest="agent_command", required=True
    )
    p = agent.add_parser("run", parents=[common], help="run an agent on a prompt; '-' reads it from stdin")
    p.add_argument("name", help="the agent, as in the agents file")
    p.add_argument("prompt")
    p.set_defaults(func=run, command_name="agent run")
    p = agent.add_parser("ls", parents=[common], help="list the agents")
    p.set_defaults(func=run, command_name="agent ls")
    tools = sub.add_parser("tools", help="MCP tools").add_subparsers(dest="tools_command", required=True)
    p = tools.add_parser("ls", parents=[common], help="list the tools your organisation may use")
    p.add_argument("--server", default="", help="only this tool server's tools")
    p.set_defaults(func=run, command_name="tools ls")
    p = tools.add_parser("calls", parents=[common], help="the tool calls agents made (admins), newest first")
    p.add_argument("--agent", default="", help="only this agent's calls")
    p.add_argument("--limit", type=int, default=50)
    p.set_defaults(func=run, command_name="tools calls")


def _service(client: Any, args: argparse.Namespace) -> Any:
    from pointsman.agent.v1 import agent_pb2

    from ..client.options import CallDefaults
    from ..client.sync import Service

    timeout = args.timeout
    defaults = CallDefaults(timeout or 30.0, timeout or 300.0, args.api_key, args.token)
    # No retries: a run is not idempotent (it calls tools).
    return Service(client.channel, agent_pb2.DESCRIPTOR.services_by_name["AgentService"], defaults, None)


def _name(value: Any, prefix: str) -> str:
    return str(value).removeprefix(prefix)


def run(args: argparse.Namespace) -> int:
    from pointsman.agent.v1 import agent_pb2 as pb

    from .connection import connect
    from .output import print_json

    with connect(args) as client:
        service = _service(client, args)
        if args.command_name == "agent run":
            prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
            request = pb.RunAgentRequest(agent=f"agents/{args.name}", prompt=prompt)
            return _show_run(service.RunAgent(request), args.json)
        if args.command_name == "agent ls":
            for agent in service.ListAgents(pb.ListAgentsRequest()).agents:
                if args.json:
                    print_json(agent)
                else:
                    tools = ",".join(agent.tools) or "-"
                    print(f"{_name(agent.name, 'agents/')}\t{agent.model}\t{tools}\t{agent.description}")
            return 0
        if args.command_name == "tools ls":
            listing = service.ListTools(pb.ListToolsRequest(server=args.server))
            if args.json:
                print_json(listing)
            else:
                for tool in listing.tools:
                    print(f"{tool.qualified_name}\t{tool.description}")
                for server in listing.unavailable_servers:
                    print(f"warning: tool server {server} did not answer", file=sys.stderr)
            return 0
        page = service.ListToolCalls(
            pb.ListToolCallsRequest(page_size=args.limit, agent=f"agents/{args.agent}" if args.agent else "")
        )
        for record in page.tool_calls:
            if args.json:
                print_json(record)
            else:
                outcome = pb.ToolCallOutcome.Name(record.outcome).removeprefix("TOOL_CALL_OUTCOME_").lower()
                millis = record.duration.ToNanoseconds() / 1e6
                when = record.create_time.ToJsonString()
                print(f"{when}\t{_name(record.agent, 'agents/')}\t{record.tool}\t{outcome}\t{millis:.0f} ms")
        return 0


def _show_run(events: Any, as_json: bool) -> int:
    """Text as it streams; each tool call on its own line, marked, on stderr;
    the answer alone on stdout, so it can be piped."""
    from pointsman.agent.v1 import agent_pb2 as pb

    from .output import print_json

    at_line_start = True
    for event in events:
        if as_json:
            print_json(event)
            continue
        kind = event.WhichOneof("event")
        if kind == "text_delta":
            print(event.text_delta.text, end="", flush=True)
            at_line_start = event.text_delta.text.endswith("\n")
        elif kind == "tool_call_started":
            call = event.tool_call_started
            if not at_line_start:
                print(flush=True)
                at_line_start = True
            print(f"[step {call.step}] -> {call.tool} {call.arguments_json}", file=sys.stderr, flush=True)
        elif kind == "tool_call_finished":
            done = event.tool_call_finished
            outcome = pb.ToolCallOutcome.Name(done.outcome).removeprefix("TOOL_CALL_OUTCOME_").lower()
            millis = done.duration.ToNanoseconds() / 1e6
            result = done.result if len(done.result) <= 200 else done.result[:200] + "..."
            print(f"[step {done.step}] <- {done.tool} {outcome} in {millis:.0f} ms: {result}", file=sys.stderr)
        elif kind == "finish":
            finish = event.finish
            if not at_line_start:
                print(flush=True)
            reason = pb.StopReason.Name(finish.reason).removeprefix("STOP_REASON_").lower()
            usage = finish.total_usage
            summary = (
                f"[{reason}: {finish.steps} step(s), {finish.tool_calls} tool call(s), {usage.total_tokens} tokens]"
            )
            print(summary, file=sys.stderr)
            if finish.reason == pb.STOP_REASON_ERROR:
                print(f"error: {finish.error_code} {finish.error_reason}: {finish.error_message}", file=sys.stderr)
                return 1
            return 0 if finish.reason == pb.STOP_REASON_ANSWERED else 3
    return 1
