"""`pointsman workflow run NAME "..."` (each step shown as it happens) and
`pointsman workflow ls`."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    workflow = sub.add_parser("workflow", help="workflows run by the gateway").add_subparsers(
        dest="workflow_command", required=True
    )
    p = workflow.add_parser("run", parents=[common], help="run a workflow on an input; '-' reads it from stdin")
    p.add_argument("name", help="the workflow; '' runs the default analysis (comparative)")
    p.add_argument("input")
    p.set_defaults(func=run, command_name="workflow run")
    p = workflow.add_parser("ls", parents=[common], help="list the workflows")
    p.set_defaults(func=run, command_name="workflow ls")


def run(args: argparse.Namespace) -> int:
    from pointsman.agent.v1 import agent_pb2 as pb

    from .agents import _service
    from .connection import connect
    from .output import print_json

    with connect(args) as client:
        service = _service(client, args)
        if args.command_name == "workflow ls":
            listing = service.ListWorkflows(pb.ListWorkflowsRequest())
            for workflow in listing.workflows:
                if args.json:
                    print_json(workflow)
                    continue
                name = workflow.name.removeprefix("workflows/")
                mark = " (default)" if workflow.name == listing.default_workflow else ""
                steps = ",".join(f"{s.name}:{s.kind}" for s in workflow.steps)
                print(f"{name}{mark}\t{steps}\t{workflow.description}")
            return 0
        text = sys.stdin.read() if args.input == "-" else args.input
        request = pb.RunWorkflowRequest(workflow=f"workflows/{args.name}" if args.name else "", input=text)
        return _show_run(service.RunWorkflow(request), args.json)


def _show_run(events: Any, as_json: bool) -> int:
    """Each step's start and end on stderr (the models' text too, so a
    comparison stays readable); the final answer alone on stdout."""
    from pointsman.agent.v1 import agent_pb2 as pb

    from .output import print_json

    for event in events:
        if as_json:
            print_json(event)
            continue
        kind = event.WhichOneof("event")
        if kind == "step_started":
            print(f"[{event.step}] {event.step_started.kind} ...", file=sys.stderr, flush=True)
        elif kind == "step_finished":
            done = event.step_finished
            millis = done.duration.ToNanoseconds() / 1e6
            output = done.output if len(done.output) <= 200 else done.output[:200] + "..."
            output = output.replace("\n", " ")
            tokens = done.usage.total_tokens
            print(f"[{event.step}] done in {millis:.0f} ms, {tokens} tokens: {output}", file=sys.stderr)
        elif kind == "finish":
            finish = event.finish
            reason = pb.StopReason.Name(finish.reason).removeprefix("STOP_REASON_").lower()
            print(f"[{reason}: {finish.steps} step(s), {finish.total_usage.total_tokens} tokens]", file=sys.stderr)
            if finish.reason == pb.STOP_REASON_ERROR:
                print(f"error: {finish.error_code} {finish.error_reason}: {finish.error_message}", file=sys.stderr)
                return 1
            print(finish.answer)
            return 0 if finish.reason == pb.STOP_REASON_ANSWERED else 3
    return 1
