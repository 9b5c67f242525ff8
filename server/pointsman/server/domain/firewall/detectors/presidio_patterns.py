"""Presidio's pattern recognizers (their patterns, context words, checksums
and invalidation), loaded without importing the `presidio_analyzer` package.

That package's __init__ imports its analyzer engine and every NLP engine,
hence spaCy: about 60 MB of memory and most of a second that a pattern
recognizer never uses. Each recognizer we use is a small file whose only
Presidio imports are the `Pattern` and `PatternRecognizer` base classes (and
a few names for type hints), so its source is run here with those names
provided by stand-ins below: the code that decides (regexes, validate_result,
invalidate_result) is Presidio's own, unchanged. The real and the stand-in
recognizers are compared in tests/test_detectors.py.

Only the package's own files are read (found with importlib, not imported).
"""

from __future__ import annotations

import builtins
import importlib.util
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

# The recognizers used, by class name: their file under the package.
FILES: dict[str, str] = {
    "CryptoRecognizer": "predefined_recognizers/generic/crypto_recognizer.py",
    "DateRecognizer": "predefined_recognizers/generic/date_recognizer.py",
    "IbanRecognizer": "predefined_recognizers/generic/iban_recognizer.py",
    "IpRecognizer": "predefined_recognizers/generic/ip_recognizer.py",
    "MacAddressRecognizer": "predefined_recognizers/generic/mac_recognizer.py",
    "UrlRecognizer": "predefined_recognizers/generic/url_recognizer.py",
    "UuidRecognizer": "predefined_recognizers/generic/uuid_recognizer.py",
    "NhsRecognizer": "predefined_recognizers/country_specific/uk/uk_nhs_recognizer.py",
    "MedicalLicenseRecognizer": "predefined_recognizers/country_specific/us/medical_license_recognizer.py",
    "UsBankRecognizer": "predefined_recognizers/country_specific/us/us_bank_recognizer.py",
    "UsItinRecognizer": "predefined_recognizers/country_specific/us/us_itin_recognizer.py",
    "UsLicenseRecognizer": "predefined_recognizers/country_specific/us/us_driver_license_recognizer.py",
    "UsPassportRecognizer": "predefined_recognizers/country_specific/us/us_passport_recognizer.py",
    "UsSsnRecognizer": "predefined_recognizers/country_specific/us/us_ssn_recognizer.py",
}
# Modules of the package the files above import from, besides the package itself.
_DATA_MODULES: dict[str, str] = {
    "presidio_analyzer.predefined_recognizers.generic.iban_patterns": "predefined_recognizers/generic/iban_patterns.py",
}


class Pattern:
    """Presidio's Pattern: a named regex and its score."""

    def __init__(self, name: str, regex: str, score: float) -> None:
        self.name = name
        self.regex = regex
        self.score = score


class EntityRecognizer:
    """What the recognizers use of Presidio's EntityRecognizer."""

    def __init__(
        self,
        supported_entities: list[str],
        name: str | None = None,
        supported_language: str = "en",
        version: str = "0.0.1",
        context: list[str] | None = None,
        country_code: str | None = None,
    ) -> None:
        self.supported_entities = supported_entities
        self.name = name or self.__class__.__name__
        self.supported_language = supported_language
        self.version = version
        self.context = context or []
        self.country_code = country_code

    @staticmethod
    def sanitize_value(text: str, replacement_pairs: Sequence[tuple[str, str]]) -> str:
        for search_string, replacement_string in replacement_pairs:
            text = text.replace(search_string, replacement_string)
        return text


class PatternRecognizer(EntityRecognizer):
    """What the recognizers use of Presidio's PatternRecognizer: the
    constructor's attributes and the default (absent) checks."""

    def __init__(
        self,
        supported_entity: str,
        name: str | None = None,
        supported_language: str = "en",
        patterns: list[Pattern] | None = None,
        deny_list: list[str] | None = None,
        context: list[str] | None = None,
        deny_list_score: float = 1.0,
        global_regex_flags: int | None = None,
        version: str = "0.0.1",
        country_code: str | None = None,
    ) -> None:
        if not supported_entity:
            raise ValueError("Pattern recognizer should be initialized with entity")
        if not patterns:
            raise ValueError("Pattern recognizer should be initialized with patterns")
        super().__init__([supported_entity], name, supported_language, version, country_code=country_code)
        self.patterns = patterns
        self.context = context  # type: ignore[assignment]
        self.deny_list: list[str] = []
        self.deny_list_score = deny_list_score
        self.global_regex_flags = global_regex_flags

    def validate_result(self, pattern_text: str) -> bool | None:
        return None

    def invalidate_result(self, pattern_text: str) -> bool | None:
        return None


class _Unused:
    """Names imported for type hints or for `analyze`, which is never called."""


def _package_root() -> Path:
    spec = importlib.util.find_spec("presidio_analyzer")  # finds, does not import
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("presidio-analyzer is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def _stand_in(name: str, attributes: Mapping[str, Any]) -> ModuleType:
    module = ModuleType(name)
    module.__dict__.update(attributes)
    return module


_lock = threading.Lock()
_classes: dict[str, type[PatternRecognizer]] = {}


def _run(root: Path, relative: str, name: str, modules: dict[str, ModuleType]) -> dict[str, Any]:
    """Runs one of the package's files with its `presidio_analyzer` imports
    answered from `modules`; other imports are ordinary."""

    def importer(
        wanted: str,
        globals: Mapping[str, object] | None = None,
        locals: Mapping[str, object] | None = None,
        fromlist: Sequence[str] = (),
        level: int = 0,
    ) -> ModuleType:
        if level == 0 and wanted.split(".")[0] == "presidio_analyzer":
            if wanted not in modules:
                raise ImportError(f"{relative} imports {wanted}, which presidio_patterns does not provide")
            return modules[wanted]
        return builtins.__import__(wanted, globals, locals, fromlist, level)

    path = root / relative
    namespace: dict[str, Any] = {
        "__name__": name,
        "__file__": str(path),
        "__builtins__": {**vars(builtins), "__import__": importer},
    }
    exec(compile(path.read_text(encoding="utf-8"), str(path), "exec"), namespace)
    return namespace


def recognizer_class(name: str) -> type[PatternRecognizer]:
    """Presidio's recognizer class `name` (one of FILES), on the stand-in bases."""
    with _lock:
        if not _classes:
            root = _package_root()
            bases = {
                "Pattern": Pattern,
                "PatternRecognizer": PatternRecognizer,
                "EntityRecognizer": EntityRecognizer,
                "LocalRecognizer": EntityRecognizer,
                "RecognizerResult": _Unused,
                "AnalysisExplanation": _Unused,
            }
            modules = {
                "presidio_analyzer": _stand_in("presidio_analyzer", bases),
                "presidio_analyzer.nlp_engine": _stand_in("presidio_analyzer.nlp_engine", {"NlpArtifacts": _Unused}),
            }
            for module, relative in _DATA_MODULES.items():
                modules[module] = _stand_in(module, _run(root, relative, module, modules))
            for class_name, relative in FILES.items():
                namespace = _run(root, relative, f"pointsman_presidio.{Path(relative).stem}", modules)
                _classes[class_name] = namespace[class_name]
        return _classes[name]


def recognizer(name: str, **kwargs: Any) -> PatternRecognizer:
    """An instance of Presidio's recognizer `name`."""
    factory: Callable[..., PatternRecognizer] = recognizer_class(name)
    return factory(**kwargs)
