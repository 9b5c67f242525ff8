"""Firewall accuracy: precision, recall and F1 of the PII detector per entity
type, and of the secrets detector, on labelled corpora.

A finding is correct when its span overlaps a labelled span of the same type;
a labelled span is found when some finding of its type overlaps it. The
headline is micro-averaged over CREDIT_CARD, EMAIL_ADDRESS, IBAN_CODE,
IP_ADDRESS, PHONE_NUMBER and US_SSN.

Corpora:
- `pii`: ../shared/data/pii/synth_dataset_v2.json (Microsoft presidio-research, MIT)
- `faker`: bench/data/faker_prompts.json (bench/data/generate.py, fixed seed)
- `faker-held-out`: bench/data/faker_heldout.json, same script, other
  templates written after tuning; its first run prompted three fixes
- `faker-unseen`: bench/data/faker_unseen.json, a second held-out set written
  after those fixes; nothing was changed after its first run
- `secrets`: bench/data/secrets_corpus.json (same script): secrets in realistic
  prompts, and hard negatives (UUIDs, git SHAs, checksums, base64, camelCase,
  paths) of which at most 1% may be flagged.

    .venv/bin/python bench/firewall_eval.py [--presidio] [--errors N] [--json PATH]

`--presidio` also scores Presidio's AnalyzerEngine as shipped (pattern-only,
no-op NLP engine) on the same corpora, for comparison.
"""

from __future__ import annotations

import argparse
import json
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pointsman.server.domain.firewall.detectors.pii import PiiDetector
from pointsman.server.domain.firewall.detectors.secrets import SecretDetector

ROOT = Path(__file__).resolve().parent.parent

HEADLINE = ("CREDIT_CARD", "EMAIL_ADDRESS", "IBAN_CODE", "IP_ADDRESS", "PHONE_NUMBER", "US_SSN")
SHARED_SET = ROOT.parent / "shared" / "data" / "pii" / "synth_dataset_v2.json"
FAKER_SET = ROOT / "bench" / "data" / "faker_prompts.json"
HELD_OUT_SET = ROOT / "bench" / "data" / "faker_heldout.json"
UNSEEN_SET = ROOT / "bench" / "data" / "faker_unseen.json"
SECRETS_SET = ROOT / "bench" / "data" / "secrets_corpus.json"

Span = tuple[str, int, int]  # type, start, end
Predict = Callable[[str], list[Span]]


def load_pii(path: Path) -> list[tuple[str, list[Span]]]:
    """Records as (text, labelled spans); both corpora use the presidio-research layout."""
    records = json.loads(path.read_text())
    return [
        (r["full_text"], [(s["entity_type"], s["start_position"], s["end_position"]) for s in r["spans"]])
        for r in records
    ]


def overlaps(a: Span, b: Span) -> bool:
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


def score(records: list[tuple[str, list[Span]]], predict: Predict, errors: int = 0) -> dict[str, Any]:
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    found: Counter[str] = Counter()
    missed: Counter[str] = Counter()
    examples: dict[str, list[str]] = defaultdict(list)
    chars = 0
    started = time.perf_counter()
    for text, gold in records:
        chars += len(text)
        predicted = predict(text)
        for p in predicted:
            if any(overlaps(p, g) for g in gold):
                tp[p[0]] += 1
            else:
                fp[p[0]] += 1
                if len(examples[f"FP {p[0]}"]) < errors:
                    examples[f"FP {p[0]}"].append(_excerpt(text, p[1], p[2]))
        for g in gold:
            if any(overlaps(p, g) for p in predicted):
                found[g[0]] += 1
            else:
                missed[g[0]] += 1
                if len(examples[f"FN {g[0]}"]) < errors:
                    examples[f"FN {g[0]}"].append(_excerpt(text, g[1], g[2]))
    elapsed = time.perf_counter() - started
    types = sorted(set(tp) | set(fp) | set(found) | set(missed))
    per_type = {t: _prf(tp[t], fp[t], found[t], missed[t]) for t in types}
    headline = _prf(
        sum(tp[t] for t in HEADLINE),
        sum(fp[t] for t in HEADLINE),
        sum(found[t] for t in HEADLINE),
        sum(missed[t] for t in HEADLINE),
    )
    return {
        "records": len(records),
        "ms_per_kb": round(elapsed / max(chars, 1) * 1024 * 1000, 3),
        "micro_headline": headline,
        "per_type": per_type,
        "errors": dict(examples),
    }


def _prf(tp: int, fp: int, found: int, missed: int) -> dict[str, Any]:
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = found / (found + missed) if found + missed else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(f1, 4),
        "tp": tp,
        "fp": fp,
        "labelled": found + missed,
    }


def _excerpt(text: str, start: int, end: int) -> str:
    return f"{text[max(0, start - 40) : start]!r} [[{text[start:end]}]] {text[end : end + 20]!r}"


def pointsman_pii() -> Predict:
    detector = PiiDetector()
    return lambda text: [(f.type, f.start, f.end) for f in detector.detect(text)]


def presidio_pii() -> Predict:
    import tldextract
    from presidio_analyzer import AnalyzerEngine
    from presidio_analyzer.nlp_engine import NoOpNlpEngine

    # Presidio's e-mail check calls tldextract, which would fetch the suffix
    # list from the network; point it at the snapshot in its wheel.
    tldextract.extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    import presidio_analyzer.predefined_recognizers.generic.email_recognizer as email

    email.tldextract.extract = tldextract.extract
    engine = AnalyzerEngine(
        nlp_engine=NoOpNlpEngine(models=[{"lang_code": "en", "model_name": "none"}]), supported_languages=["en"]
    )
    return lambda text: [(r.entity_type, r.start, r.end) for r in engine.analyze(text, language="en")]


def secrets_score(path: Path, errors: int = 0) -> dict[str, Any]:
    """Recall over labelled secrets (a secret counts as found when a finding
    covers the whole of it), and the share of hard negatives with any finding."""
    corpus = json.loads(path.read_text())
    detector = SecretDetector()
    found = Counter[str]()
    total = Counter[str]()
    partial = 0
    examples: dict[str, list[str]] = defaultdict(list)
    for item in corpus["positives"]:
        text, kind, start, end = item["text"], item["type"], item["start"], item["end"]
        total[kind] += 1
        findings = detector.detect(text)
        if any(f.start <= start and f.end >= end for f in findings):
            found[kind] += 1
        else:
            if any(f.start < end and start < f.end for f in findings):
                partial += 1
            if len(examples["FN " + kind]) < errors:
                examples["FN " + kind].append(_excerpt(text, start, end))
    flagged = Counter[str]()
    negatives = Counter[str]()
    for item in corpus["negatives"]:
        negatives[item["kind"]] += 1
        findings = detector.detect(item["text"])
        if findings:
            flagged[item["kind"]] += 1
            if len(examples["FP " + item["kind"]]) < errors:
                f = findings[0]
                examples["FP " + item["kind"]].append(f"{f.type}: " + _excerpt(item["text"], f.start, f.end))
    all_found, all_total = sum(found.values()), sum(total.values())
    all_flagged, all_negatives = sum(flagged.values()), sum(negatives.values())
    return {
        "recall": round(all_found / all_total, 4),
        "secrets": all_total,
        "partial_spans": partial,
        "hard_negatives_flagged": round(all_flagged / all_negatives, 4),
        "hard_negatives": all_negatives,
        "recall_per_type": {k: f"{found[k]}/{total[k]}" for k in sorted(total)},
        "flagged_per_kind": {k: f"{flagged[k]}/{negatives[k]}" for k in sorted(negatives)},
        "errors": dict(examples),
    }


def report(name: str, result: dict[str, Any], types: Sequence[str] | None = None) -> None:
    h = result["micro_headline"]
    print(f"\n== {name}: {result['records']} records, {result['ms_per_kb']} ms/KB")
    print(f"micro over the six types: P={h['precision']:.3f} R={h['recall']:.3f} F1={h['f1']:.3f}")
    print(f"{'type':20s} {'P':>6s} {'R':>6s} {'F1':>6s} {'tp':>5s} {'fp':>5s} {'labelled':>8s}")
    for t, m in result["per_type"].items():
        if types is None or t in types or m["tp"] or m["fp"]:
            mark = "*" if t in HEADLINE else " "
            print(
                f"{mark}{t:19s} {m['precision']:6.3f} {m['recall']:6.3f} {m['f1']:6.3f} "
                f"{m['tp']:5d} {m['fp']:5d} {m['labelled']:8d}"
            )
    for key, values in result["errors"].items():
        print(f"  {key}:")
        for v in values:
            print(f"    {v}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, default=SHARED_SET)
    parser.add_argument("--presidio", action="store_true", help="also score Presidio's AnalyzerEngine as shipped")
    parser.add_argument("--errors", type=int, default=0, help="print up to N misses and false positives per type")
    parser.add_argument("--json", type=Path, default=ROOT / "bench" / "results" / "firewall_eval.json")
    args = parser.parse_args()

    results: dict[str, Any] = {}
    predictors = {"pointsman": pointsman_pii()}
    if args.presidio:
        predictors["presidio"] = presidio_pii()
    corpora = (
        ("shared", args.dataset),
        ("faker", FAKER_SET),
        ("faker-held-out", HELD_OUT_SET),
        ("faker-unseen", UNSEEN_SET),
    )
    for corpus, path in corpora:
        records = load_pii(path)
        for name, predict in predictors.items():
            result = score(records, predict, args.errors if name == "pointsman" else 0)
            results[f"pii/{corpus}/{name}"] = result
            report(f"PII, {corpus} set ({path.name}), {name}", result)
    secrets = secrets_score(SECRETS_SET, args.errors)
    results["secrets"] = secrets
    print(f"\n== secrets ({SECRETS_SET.name})")
    print(
        f"recall {secrets['recall']:.3f} of {secrets['secrets']} "
        f"(partial spans: {secrets['partial_spans']}); hard negatives flagged "
        f"{secrets['hard_negatives_flagged']:.3%} of {secrets['hard_negatives']}"
    )
    print("recall per type:", secrets["recall_per_type"])
    print("flagged per negative kind:", secrets["flagged_per_kind"])
    for key, values in secrets["errors"].items():
        print(f"  {key}:")
        for v in values:
            print(f"    {v}")
    for result in results.values():
        result.pop("errors", None)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"\nwrote {args.json.relative_to(ROOT) if args.json.is_relative_to(ROOT) else args.json}")


if __name__ == "__main__":
    main()
