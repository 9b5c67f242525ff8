"""Converse histories: `conversation show`, `conversation rm`."""

from __future__ import annotations

import argparse
from typing import Any

from pointsman.orchestrator.v1 import orchestrator_pb2 as pb
from pointsman.type.v1 import chat_pb2

from .arguments import command, group
from .connection import connect
from .output import label, name, print_json


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    conversation = group(sub, "conversation", "Converse histories", "conversation_command")
    for verb, text in (("show", "print a conversation's history"), ("rm", "forget a conversation")):
        p = command(conversation, verb, cmd_conversation, text, [common])
        p.add_argument("name", help="conversations/{id} or {id}")


def cmd_conversation(args: argparse.Namespace) -> int:
    resource = name(args.name, "conversations")
    with connect(args) as client:
        if args.conversation_command == "rm":
            client.orchestrator.DeleteConversation(pb.DeleteConversationRequest(name=resource))
            if not args.json:
                print(f"deleted {resource}")
            return 0
        conversation = client.orchestrator.GetConversation(pb.GetConversationRequest(name=resource))
    if args.json:
        print_json(conversation)
        return 0
    for message in conversation.messages:
        print(f"{label(chat_pb2.Role, message.role, 'ROLE_')}: {message.content}")
    return 0
