"""Content detectors: PII, secrets and toxicity, each behind the `Detector` contract."""

from .base import Detector

__all__ = ["Detector"]
