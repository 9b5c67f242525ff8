"""Server reflection (grpc.reflection.v1alpha) that serves the contract with
its comments, so `grpcurl describe` shows the documentation of every service,
method, message and field.

grpcio-reflection serves what the generated modules hold, which has no
source info; this servicer answers from the descriptor set that
scripts/generate-protos writes with `--include_source_info`
(gen/pointsman/descriptor_set.binpb), and from the generated modules' pool
for the files that set does not hold (health, reflection itself)."""

from __future__ import annotations

import importlib.resources
from collections.abc import AsyncIterator, Iterable

import grpc
from google.protobuf import descriptor, descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection_pb2 as pb
from grpc_reflection.v1alpha import reflection_pb2_grpc

DESCRIPTOR_SET = "descriptor_set.binpb"


def load_documented_files() -> dict[str, bytes]:
    """File name -> serialized FileDescriptorProto, with source info."""
    data = importlib.resources.files("pointsman").joinpath(DESCRIPTOR_SET).read_bytes()
    files = descriptor_pb2.FileDescriptorSet.FromString(data)
    return {file.name: file.SerializeToString() for file in files.file}


class ReflectionService(reflection_pb2_grpc.ServerReflectionServicer):  # type: ignore[misc]  # generated, untyped
    def __init__(self, service_names: Iterable[str], documented: dict[str, bytes] | None = None) -> None:
        self._services = tuple(sorted(service_names))
        self._documented = load_documented_files() if documented is None else documented
        self._pool = descriptor_pool.Default()

    async def ServerReflectionInfo(
        self, requests: AsyncIterator[pb.ServerReflectionRequest], context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.ServerReflectionResponse]:
        async for request in requests:
            yield self._answer(request)

    def _answer(self, request: pb.ServerReflectionRequest) -> pb.ServerReflectionResponse:
        asked = request.WhichOneof("message_request")
        try:
            if asked == "list_services":
                return pb.ServerReflectionResponse(
                    original_request=request,
                    list_services_response=pb.ListServiceResponse(
                        service=[pb.ServiceResponse(name=name) for name in self._services]
                    ),
                )
            if asked == "file_by_filename":
                return self._files(request, self._pool.FindFileByName(request.file_by_filename))
            if asked == "file_containing_symbol":
                return self._files(request, self._pool.FindFileContainingSymbol(request.file_containing_symbol))
            if asked == "file_containing_extension":
                asked_for = request.file_containing_extension
                message = self._pool.FindMessageTypeByName(asked_for.containing_type)
                extension = self._pool.FindExtensionByNumber(message, asked_for.extension_number)
                return self._files(request, self._pool.FindFileContainingSymbol(extension.full_name))
            if asked == "all_extension_numbers_of_type":
                message = self._pool.FindMessageTypeByName(request.all_extension_numbers_of_type)
                numbers = sorted(e.number for e in self._pool.FindAllExtensions(message))
                return pb.ServerReflectionResponse(
                    original_request=request,
                    all_extension_numbers_response=pb.ExtensionNumberResponse(
                        base_type_name=message.full_name, extension_number=numbers
                    ),
                )
        except KeyError:
            return _error(request, grpc.StatusCode.NOT_FOUND, "not found")
        return _error(request, grpc.StatusCode.INVALID_ARGUMENT, "unknown request")

    def _files(
        self, request: pb.ServerReflectionRequest, file: descriptor.FileDescriptor
    ) -> pb.ServerReflectionResponse:
        """The file and every file it imports, transitively."""
        seen: dict[str, bytes] = {}
        pending = [file]
        while pending:
            current = pending.pop()
            if current.name in seen:
                continue
            seen[current.name] = self._serialized(current)
            pending.extend(current.dependencies)
        return pb.ServerReflectionResponse(
            original_request=request,
            file_descriptor_response=pb.FileDescriptorResponse(file_descriptor_proto=list(seen.values())),
        )

    def _serialized(self, file: descriptor.FileDescriptor) -> bytes:
        documented = self._documented.get(file.name)
        if documented is not None:
            return documented
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        return proto.SerializeToString()


def _error(request: pb.ServerReflectionRequest, code: grpc.StatusCode, message: str) -> pb.ServerReflectionResponse:
    return pb.ServerReflectionResponse(
        original_request=request,
        error_response=pb.ErrorResponse(error_code=code.value[0], error_message=message),
    )
