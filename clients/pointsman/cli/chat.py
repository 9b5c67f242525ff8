"""Asking models: `chat`, `compare`, `converse`, and `models` to see them."""

from __future__ import annotations

import argparse
import sys
import threading
import uuid
from collections.abc import Iterator
from typing import Any

from pointsman.orchestrator.v1 import orchestrator_pb2 as pb
from pointsman.type.v1 import chat_pb2

from ..client.messages import chat_messages, chat_request
from .arguments import command, model_flag, read_text
from .connection import connect
from .output import label, name, pages, print_json


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    p = command(sub, "chat", cmd_chat, "stream an answer; '-' reads the prompt from stdin", [common])
    p.add_argument("prompt")
    model_flag(p)
    _generation_flags(p)
    metadata_flags(p)

    p = command(sub, "compare", cmd_compare, "ask several models the same prompt; '-' reads stdin", [common])
    p.add_argument("prompt")
    p.add_argument("-m", "--model", action="append", required=True, dest="models", help="a model alias; 2 to 8")
    p.add_argument("--judge", help="a model alias that reads every answer and writes a synthesis")
    _generation_flags(p)

    p = command(
        sub,
        "converse",
        cmd_converse,
        "a conversation: each line of stdin is a turn, answers stream back",
        [common],
    )
    model_flag(p)
    p.add_argument("--system", help="system prompt for the whole conversation")
    p.add_argument("--resume", metavar="NAME", help="go on with conversations/{id}")

    command(sub, "models", cmd_models, "list model aliases and whether they can answer now", [common])


def tag(text: str) -> tuple[str, str]:
    """`--tag key=value`."""
    key, equals, value = text.partition("=")
    if not equals or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not key=value")
    return key, value


def metadata_flags(p: argparse.ArgumentParser, *, filters: bool = False) -> None:
    what = "only calls for this end user" if filters else "the end user the call is for (RequestMetadata.end_user_id)"
    p.add_argument("--user", help=what)
    p.add_argument(
        "--tag",
        action="append",
        type=tag,
        dest="tags",
        metavar="KEY=VALUE",
        help="only calls with this tag; repeatable" if filters else "a tag for spend attribution; repeatable",
    )


def _generation_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--system", help="system prompt")
    p.add_argument("--max-tokens", type=int)
    p.add_argument("--temperature", type=float)


def _config(args: argparse.Namespace) -> chat_pb2.GenerationConfig:
    config = chat_pb2.GenerationConfig()
    if getattr(args, "max_tokens", None) is not None:
        config.max_tokens = args.max_tokens
    if getattr(args, "temperature", None) is not None:
        config.temperature = args.temperature
    return config


def cmd_chat(args: argparse.Namespace) -> int:
    request = chat_request(
        read_text(args.prompt),
        args.model,
        system=args.system,
        max_tokens=args.max_tokens,
        temperature=args.temperature,
    )
    if args.user or args.tags:
        request.metadata.CopyFrom(pb.RequestMetadata(end_user_id=args.user or "", tags=dict(args.tags or [])))
    with connect(args) as client:
        wrote_text = False
        for event in client.orchestrator.Chat(request):
            if args.json:
                print_json(event)
            elif event.HasField("text_delta"):
                sys.stdout.write(event.text_delta.text)
                sys.stdout.flush()
                wrote_text = True
            elif event.HasField("finish") and event.finish.reason != pb.FINISH_REASON_STOP:
                print(f"\n[finished: {label(pb.FinishReason, event.finish.reason, 'FINISH_REASON_')}]", file=sys.stderr)
        if wrote_text:
            print()
    return 0


class _Answer:
    def __init__(self) -> None:
        self.text: list[str] = []
        self.deployment = ""
        self.tokens = ""
        self.latency = ""
        self.outcome = ""


def cmd_compare(args: argparse.Namespace) -> int:
    request = pb.CompareRequest(
        models=args.models,
        messages=chat_messages(read_text(args.prompt), args.system),
        config=_config(args),
        judge_model=args.judge or "",
    )
    answers: dict[tuple[str, bool], _Answer] = {}
    with connect(args) as client:
        for event in client.orchestrator.Compare(request):
            if args.json:
                print_json(event)
                continue
            answer = answers.setdefault((event.model, event.synthesis), _Answer())
            kind = event.WhichOneof("event")
            if kind == "start":
                answer.deployment = event.start.deployment.name
            elif kind == "text_delta":
                answer.text.append(event.text_delta.text)
            elif kind == "usage":
                answer.tokens = f"{event.usage.input_tokens} in + {event.usage.output_tokens} out tokens"
            elif kind == "finish":
                answer.latency = f"{event.finish.timings.total.ToMilliseconds()} ms"
                reason = event.finish.reason
                if reason != pb.FINISH_REASON_STOP:
                    answer.outcome = label(pb.FinishReason, reason, "FINISH_REASON_")
            elif kind == "error":
                answer.outcome = f"error {event.error.reason or event.error.code}: {event.error.message}"
    if args.json:
        return 0
    for (model, synthesis), answer in answers.items():
        facts = [f for f in (answer.deployment, answer.latency, answer.tokens, answer.outcome) if f]
        title = f"synthesis by {model}" if synthesis else model
        print(f"== {title}  ({', '.join(facts)})")
        print("".join(answer.text))
        print()
    return 0


def _turns(setup: pb.ConversationSetup, answered: threading.Event, prompt: bool) -> Iterator[pb.ConverseRequest]:
    """Setup, then one turn per line of stdin, each after the last was answered,
    so the next prompt shows below the answer; ends (half-closing the call) at EOF."""
    yield pb.ConverseRequest(setup=setup)
    while True:
        answered.wait()
        answered.clear()
        if prompt:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            if prompt:
                print(file=sys.stderr)  # end the prompt's line at EOF (Ctrl-D)
            return
        text = line.rstrip("\r\n")
        if not text.strip():
            answered.set()
            continue
        yield pb.ConverseRequest(turn=pb.UserTurn(turn_id=uuid.uuid4().hex[:12], content=text))


def cmd_converse(args: argparse.Namespace) -> int:
    setup = pb.ConversationSetup(
        model=args.model,
        system_prompt=args.system or "",
        conversation=name(args.resume, "conversations") if args.resume else "",
    )
    answered = threading.Event()  # set when the next line may be read
    interactive = sys.stdin.isatty()
    with connect(args) as client:
        for event in client.orchestrator.Converse(_turns(setup, answered, interactive)):
            kind = event.WhichOneof("event")
            if args.json:
                print_json(event)
            elif kind == "started":
                resumed = f", {event.started.history_length} messages so far" if event.started.history_length else ""
                print(f"[{event.started.conversation}{resumed}]", file=sys.stderr, flush=True)
            elif kind == "text_delta":
                sys.stdout.write(event.text_delta.text)
                sys.stdout.flush()
            elif kind == "finish":
                print(flush=True)
            elif kind == "error":
                print(f"error: {event.error.reason or event.error.code}: {event.error.message}", file=sys.stderr)
            if kind in ("started", "finish", "error"):
                answered.set()
    return 0


def _deployment_state(deployment: Any) -> str:
    state = deployment.state
    if state.circuit == pb.CIRCUIT_STATE_OPEN:
        return f"unavailable after {state.consecutive_failures} failures, tried again soon"
    if state.circuit == pb.CIRCUIT_STATE_HALF_OPEN:
        return "recovering: being tried again"
    return "available"


def cmd_models(args: argparse.Namespace) -> int:
    with connect(args) as client:
        for model in pages(
            lambda token: client.orchestrator.ListModels(pb.ListModelsRequest(page_token=token)), "models"
        ):
            if args.json:
                print_json(model)
                continue
            if model.HasField("router"):
                router = model.router
                classes = ", ".join(f"{c.name} -> {c.model}" for c in router.classes)
                asks = f", unsure: ask {router.classifier_model}" if router.classifier_model else ""
                print(f"{model.alias}\trouter\t{classes}, else {router.default_model}{asks}")
                continue
            strategy = label(pb.RoutingStrategy, model.strategy, "ROUTING_STRATEGY_")
            where = ", ".join(f"{d.name} ({_deployment_state(d)})" for d in model.deployments)
            builtin = "  [built-in deterministic model]" if model.builtin else ""
            down = "  [unavailable: no deployment can answer now]" if not model.available else ""
            print(f"{model.alias}\t{strategy}\t{where}{builtin}{down}")
    return 0
