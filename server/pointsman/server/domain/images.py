"""Image parts of chat messages: the checks on them. Images are never
scanned by the firewall (it reads text); domain/vision.py picks the
deployments that can take them."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from .chat import ImagePart, Message, Role
from .errors import ViolationCollector

# The types every provider with vision takes (OpenAI's and Anthropic's common set).
ALLOWED_MIME_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
MAX_URL_CHARS = 8192


@dataclass(frozen=True, slots=True)
class ImageLimits:
    """From settings (POINTSMAN_IMAGE_*). The defaults are Anthropic's API
    limit per image (5 MB) and room for a few of them per request."""

    max_bytes: int = 5 * 1024 * 1024
    max_request_bytes: int = 10 * 1024 * 1024
    max_per_request: int = 20


def sniff_mime_type(data: bytes) -> str | None:
    """The allowed image type the bytes start like, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if len(data) >= 12 and data.startswith(b"RIFF") and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def check_image(image: ImagePart, role: Role, errors: ViolationCollector, path: str) -> None:
    """One image part: where it may be, where it comes from, and (inline) its type."""
    if role is not Role.USER:
        errors.add(path, "images are allowed only in user messages")
    if image.mime_type and image.mime_type not in ALLOWED_MIME_TYPES:
        errors.add(f"{path}.mime_type", f"must be one of {', '.join(ALLOWED_MIME_TYPES)}")
    if image.url:
        _check_url(image.url, errors, f"{path}.url")
    elif image.data:
        if not image.mime_type:
            errors.add(f"{path}.mime_type", "is required with data")
        elif image.mime_type in ALLOWED_MIME_TYPES:
            found = sniff_mime_type(image.data)
            if found != image.mime_type:
                looks = f"they look like {found}" if found else "they match no allowed image type"
                errors.add(f"{path}.data", f"is not {image.mime_type}: its first bytes do not match ({looks})")
    else:
        errors.add(path, "set url or data")


def _check_url(url: str, errors: ViolationCollector, path: str) -> None:
    if len(url) > MAX_URL_CHARS:
        errors.add(path, f"must be at most {MAX_URL_CHARS} characters")
        return
    try:
        parts = urlsplit(url)
    except ValueError:
        parts = None
    if parts is None or parts.scheme.lower() != "https" or not parts.hostname:
        errors.add(path, "must be an https URL (send other images inline, as data)")
    elif any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        errors.add(path, "must not contain spaces or control characters")


def check_request_images(
    messages: Sequence[Message], limits: ImageLimits, errors: ViolationCollector, path: str = "messages"
) -> None:
    """Every image of the request, and the limits on their number and size."""
    count = 0
    total_bytes = 0
    for index, message in enumerate(messages):
        for position, part in enumerate(message.parts):
            if type(part) is not ImagePart:
                continue
            part_path = f"{path}[{index}].parts[{position}].image"
            count += 1
            size = len(part.data)
            total_bytes += size
            if size > limits.max_bytes:
                errors.add(f"{part_path}.data", f"is {size} bytes; the limit is {limits.max_bytes} per image")
            check_image(part, message.role, errors, part_path)
    if count > limits.max_per_request:
        errors.add(path, f"holds {count} images; at most {limits.max_per_request} are allowed per request")
    if total_bytes > limits.max_request_bytes:
        errors.add(path, f"holds {total_bytes} bytes of images; the limit is {limits.max_request_bytes} per request")


def image_digest(data: bytes) -> str:
    """What the response cache's key holds of an inline image: its hash, not its bytes."""
    return hashlib.sha256(data).hexdigest()
