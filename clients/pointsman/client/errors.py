"""The one error type clients raise: the gRPC status code plus the parsed
AIP-193 details (ErrorInfo, BadRequest, RetryInfo)."""

from __future__ import annotations

from dataclasses import dataclass, field

import grpc
from google.rpc import error_details_pb2
from grpc_status import rpc_status


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


@dataclass
class PointsmanError(Exception):
    code: grpc.StatusCode
    message: str
    reason: str = ""
    domain: str = ""
    metadata: dict[str, str] = field(default_factory=dict)
    field_violations: list[FieldViolation] = field(default_factory=list)
    retry_delay: float | None = None  # seconds, from RetryInfo

    def __str__(self) -> str:
        text = f"{self.code.name}: {self.message}"
        if self.reason:
            text += f" (reason {self.reason})"
        return text

    @property
    def request_id(self) -> str:
        return self.metadata.get("request_id", "")

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> PointsmanError:
        call: grpc.Call = error
        code = call.code() or grpc.StatusCode.UNKNOWN
        out = cls(code, call.details() or "")
        try:
            status = rpc_status.from_call(call)
        except ValueError:  # details that do not match the status: keep what we have
            status = None
        if status is None:
            return out
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                out.reason, out.domain, out.metadata = info.reason, info.domain, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                out.field_violations = [FieldViolation(v.field, v.description) for v in bad.field_violations]
            elif detail.Is(error_details_pb2.RetryInfo.DESCRIPTOR):
                retry = error_details_pb2.RetryInfo()
                detail.Unpack(retry)
                out.retry_delay = retry.retry_delay.ToNanoseconds() / 1e9
        return out
