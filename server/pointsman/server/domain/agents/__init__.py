"""Agents run by the gateway: definitions, the tools they may use, the loop."""
