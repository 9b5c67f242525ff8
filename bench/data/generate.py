"""Generates the firewall's evaluation corpora with a fixed seed:

- faker_prompts.json: chat prompts in realistic wording with labelled PII
  (presidio-research layout: full_text, spans), in eleven Faker locales, with
  unlabelled look-alikes around them (order numbers, dates, prices, ISBNs,
  barcodes, versions, UUIDs, times) that a detector must leave alone.
- secrets_corpus.json: `positives`, secrets in the formats users leak most,
  inside prompts, configs, shell lines and code, each with the span of the
  whole secret; `negatives`, hard negatives that look like secrets and are
  not (UUIDs, git SHAs, checksums, base64 blobs, camelCase identifiers, file
  paths, placeholders, public keys).

Secrets are random strings in the public formats of each vendor, never real
keys. Regenerate with:

    .venv/bin/python bench/data/generate.py
"""

from __future__ import annotations

import base64
import hashlib
import json
import random
import string
import uuid
from collections.abc import Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

from faker import Faker

HERE = Path(__file__).resolve().parent
SEED = 20261121
PROMPTS = 1200
SECRETS_PER_TYPE = 24
NEGATIVES_PER_KIND = 80

LOCALES = ["en_US", "en_GB", "de_DE", "fr_FR", "it_IT", "es_ES", "nl_NL", "en_AU", "pt_BR", "sv_SE", "pl_PL"]
CARD_TYPES = ["amex", "diners", "discover", "jcb15", "jcb16", "maestro", "mastercard", "visa13", "visa16", "visa19"]


class Prompt:
    """Builds a text piece by piece, remembering where labelled values land."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.spans: list[dict[str, Any]] = []
        self.length = 0

    def add(self, text: str, entity: str | None = None) -> Prompt:
        if entity:
            self.spans.append(
                {
                    "entity_type": entity,
                    "entity_value": text,
                    "start_position": self.length,
                    "end_position": self.length + len(text),
                }
            )
        self.parts.append(text)
        self.length += len(text)
        return self

    def record(self, template: str) -> dict[str, Any]:
        return {"full_text": "".join(self.parts), "spans": self.spans, "template": template}


def card(fake: Faker, rng: random.Random) -> str:
    number = fake.credit_card_number(card_type=rng.choice(CARD_TYPES))
    style = rng.random()
    if style < 0.45:
        return number
    sep = " " if style < 0.8 else "-"
    if len(number) == 15:  # Amex and old JCB group 4-6-5
        return sep.join((number[:4], number[4:10], number[10:]))
    return sep.join(number[i : i + 4] for i in range(0, len(number), 4))


def iban(fake: Faker, rng: random.Random) -> str:
    value = fake.iban()
    if rng.random() < 0.5:
        return " ".join(value[i : i + 4] for i in range(0, len(value), 4))
    return value


def ip(fake: Faker, rng: random.Random) -> str:
    return rng.choice([fake.ipv4_public, fake.ipv4_private, fake.ipv6, fake.ipv4])()


US = Faker("en_US")
US.seed_instance(SEED - 1)


def ssn(fake: Faker, rng: random.Random) -> str:
    # Other locales' ssn() are national ids (NINO, codice fiscale...): US only.
    value = US.ssn()
    return value if rng.random() < 0.85 else value.replace("-", " ")


# Unlabelled look-alikes: numbers and codes a detector should not flag.
def distractor(fake: Faker, rng: random.Random) -> str:
    kind = rng.randrange(12)
    if kind == 0:
        return f"order #{fake.numerify('#########')}"
    if kind == 1:
        return f"invoice INV-{fake.numerify('######')}"
    if kind == 2:
        return f"on {FIXED_CLOCK['date'](fake)}"
    if kind == 3:
        return f"for ${fake.pyfloat(left_digits=4, right_digits=2, positive=True)}"
    if kind == 4:
        return f"ISBN {fake.isbn13()}"
    if kind == 5:
        return f"barcode {fake.ean13()}"
    if kind == 6:
        return f"version {rng.randint(1, 20)}.{rng.randint(0, 30)}.{rng.randint(0, 99)}"
    if kind == 7:
        return f"ticket {uuid.UUID(int=rng.getrandbits(128), version=4)}"
    if kind == 8:
        return f"at {FIXED_CLOCK['time'](fake)}"
    if kind == 9:
        return f"tracking number 1Z{fake.bothify('???###########').upper()}"
    if kind == 10:
        return f"postcode {fake.postcode()}"
    return f"account ending {fake.numerify('####')}"


Template = Callable[[Faker, random.Random], Prompt]

# Faker's dates default to ranges ending "now": pinned so a rerun gives the same files.
NOW = datetime(2026, 1, 1)
FIXED_CLOCK: dict[str, Callable[[Faker], str]] = {
    "date_time": lambda f: str(f.date_time_between(datetime(1970, 1, 1), NOW)),
    "date": lambda f: f.date_between(date(1970, 1, 1), NOW.date()).isoformat(),
    "time": lambda f: f.date_time_between(datetime(1970, 1, 1), NOW).strftime("%H:%M:%S"),
    "date_of_birth": lambda f: f.date_between(date(1940, 1, 1), date(2006, 1, 1)).isoformat(),
    "credit_card_expire": lambda f: f.date_between(date(2026, 1, 1), date(2031, 1, 1)).strftime("%m/%y"),
}


def _t(*pieces: Any) -> Template:
    """A template from pieces: plain strings, ("ENTITY", generator) pairs,
    Faker method names in braces ("{name}"), or "~" for a distractor."""

    def build(fake: Faker, rng: random.Random) -> Prompt:
        prompt = Prompt()
        for piece in pieces:
            if isinstance(piece, tuple):
                entity, generate = piece
                prompt.add(generate(fake, rng), entity)
            elif piece == "~":
                prompt.add(distractor(fake, rng))
            elif piece.startswith("{") and piece.endswith("}"):
                name = piece[1:-1]
                prompt.add(FIXED_CLOCK[name](fake) if name in FIXED_CLOCK else str(getattr(fake, name)()))
            else:
                prompt.add(piece)
        return prompt

    return build


EMAIL = ("EMAIL_ADDRESS", lambda f, r: r.choice([f.email, f.free_email, f.company_email])())
PHONE = ("PHONE_NUMBER", lambda f, r: f.phone_number())
CARD = ("CREDIT_CARD", card)
IBAN = ("IBAN_CODE", iban)
IP = ("IP_ADDRESS", ip)
SSN = ("US_SSN", ssn)

TEMPLATES: list[Template] = [
    _t("Hi, I'm ", "{name}", ". Please update my contact email to ", EMAIL, " and my phone to ", PHONE, "."),
    _t("Can you draft a polite reminder to ", "{name}", " (", EMAIL, ") about ", "~", "?"),
    _t("Write a short follow-up email to ", EMAIL, " thanking them for the meeting ", "~", "."),
    _t("My number changed, it's now ", PHONE, ". The old one should be removed from ", "~", "."),
    _t("You can reach me on ", PHONE, " after 5pm or email ", EMAIL, "."),
    _t("Summarise this signature for our CRM:\n", "{name}\n", "{job}\n", "{company}\n", "T: ", PHONE, "\nE: ", EMAIL),
    _t("Please call ", "{first_name}", " back at ", PHONE, " regarding ", "~", "."),
    _t("The customer left a voicemail from ", PHONE, " asking about ", "~", ". Draft a reply."),
    _t("Format this as a vCard: ", "{name}", ", ", "{company}", ", mobile ", PHONE, ", ", EMAIL),
    _t("I was charged twice ", "~", " on my card ", CARD, ". Can you write a dispute letter?"),
    _t("Why was my payment declined? I used ", CARD, " exp ", "{credit_card_expire}", "."),
    _t("Store this card for next time: ", CARD, ", name on card ", "{name}", "."),
    _t("Help me fill the form. Card number: ", CARD, " CVV ", "{credit_card_security_code}", " billing ", "~"),
    _t("Please wire the refund to IBAN ", IBAN, " (", "{name}", ") for ", "~", "."),
    _t("Is this IBAN valid? ", IBAN),
    _t("Our supplier changed banks; new account ", IBAN, ", effective ", "~", ". Draft an announcement."),
    _t("Payment details for ", "{company}", ": ", IBAN, ", reference ", "~", "."),
    _t("Our server at ", IP, " keeps timing out since ", "~", ". What should I check?"),
    _t("Block traffic from ", IP, " and ", IP, " in this nginx config, please."),
    _t("Log line: ", "{date_time}", " login failed for user ", "{user_name}", " from ", IP, ". Is this an attack?"),
    _t("Why can't I ping ", IP, " from the VPN? Ticket ", "~", "."),
    _t("My SSN is ", SSN, ", do I need it for the W-2 form?"),
    _t("Fill in the application for ", "{name}", ", SSN ", SSN, ", born ", "{date_of_birth}", "."),
    _t("Employee record: ", "{name}", ", social security number ", SSN, ", phone ", PHONE, "."),
    _t("Can you check if ", SSN, " matches the taxpayer ", "{name}", " on ", "~", "?"),
    _t("Translate to German: 'Please send the invoice to ", EMAIL, " before ", "~", ".'"),
    _t("Shipping update ", "~", ": deliver to ", "{address}", ", contact ", PHONE, "."),
    _t("Reply to ", "{name}", " <", EMAIL, "> and cc ", EMAIL, " with the agenda."),
    _t("I'd like a callback on ", PHONE, ". It's about ", "~", " and ", "~", "."),
    _t("Pay the contractor by card ", CARD, " or bank transfer to ", IBAN, "."),
    _t("Compare these two log sources: ", IP, " and ", IP, ", both seen ", "~", "."),
    _t("Our office manager ", "{name}", " (", PHONE, ", ", EMAIL, ") will coordinate ", "~", "."),
    _t("Rewrite more formally: hey its ", "{first_name}", ", text me at ", PHONE, " when ur free"),
    _t("Generate SQL to find customers with email ", EMAIL, " or phone ", PHONE, "."),
    _t("Write a cover letter for ", "{job}", ". Contact: ", EMAIL, " / ", PHONE, "."),
    _t("Is ", "~", " the same as ", "~", "? Asking for ", "{name}", "."),
    _t("What does error code ", "~", " mean for ", "{company}", "?"),
    _t("Summarise the delivery note: ", "~", ", ", "~", ", ", "{address}", "."),
]


# Written after the detectors were tuned and never tuned against: a check on
# wording the detectors have not seen (forms, JSON, CSV, tickets, bullet lists).
HELD_OUT_TEMPLATES: list[Template] = [
    _t('Fix the JSON: {"name": "', "{name}", '", "mail": "', EMAIL, '", "tel": "', PHONE, '"}'),
    _t("name,email,phone\n", "{name}", ",", EMAIL, ",", PHONE, "\n", "{name}", ",", EMAIL, ",", PHONE),
    _t(
        "Ticket #",
        "{random_int}",
        ": customer ",
        "{name}",
        " says card ending in ",
        "{random_int}",
        " is blocked; full number ",
        CARD,
        ". Please advise.",
    ),
    _t("- Owner: ", "{name}\n- Contact: ", PHONE, "\n- Billing: ", IBAN, "\n- Notes: ", "~"),
    _t("Can u help me?? my phone ", PHONE, " got hacked and someone used my visa ", CARD, " :("),
    _t("Firewall log, ", "{date}", ": DENY tcp ", IP, ":443 -> ", IP, ":51234 (", "~", ")"),
    _t("Dear team, kindly transfer the deposit to ", IBAN, " before ", "{date}", ". Regards, ", "{name}"),
    _t(
        "Applicant: ",
        "{name}",
        "\nSocial Security No.: ",
        SSN,
        "\nDate of birth: ",
        "{date_of_birth}",
        "\nEmail: ",
        EMAIL,
    ),
    _t("Translate to French: please text ", PHONE, " when the parcel (", "~", ") arrives"),
    _t("Who owns ", IP, "? It hit our login page 400 times ", "~", "."),
    _t("Proofread: 'For questions, write to ", EMAIL, " or ring ", PHONE, " between 9 and 5.'"),
    _t("Reconcile: ", "~", " paid by ", CARD, ", refund ", "~", " to ", IBAN, "."),
]


# A second held-out set, written after the fixes the first one prompted, and
# reported as it came out: no change was made after its first run.
UNSEEN_TEMPLATES: list[Template] = [
    _t("hey, it's ", "{first_name}", " - new mobile is ", PHONE, ", old one's dead. also switched email to ", EMAIL),
    _t("Please verify the payee: ", "{company}", ", account ", IBAN, ", amount ", "~", "."),
    _t("<tr><td>", "{name}", "</td><td>", EMAIL, "</td><td>", PHONE, "</td></tr> - convert this row to markdown"),
    _t("Order notes: gift wrap; bill card ", CARD, "; ship to ", "{address}", "; questions -> ", PHONE),
    _t("Why does nmap show ", IP, " open on 22 but not ", IP, "? Scan was ", "~", "."),
    _t("W-9 details for ", "{name}", ": SSN ", SSN, ", address ", "{address}", ". Is anything missing?"),
    _t(
        "Subject: Re: refund\n\nHi ",
        "{first_name}",
        ",\nrefund goes back to the card you used (",
        CARD,
        ") within 5 days.\nBest,\n",
        "{name}",
        "\n",
        PHONE,
    ),
    _t("Rewrite as a formal letter: pls pay ", "~", " into ", IBAN, " asap and confirm to ", EMAIL),
    _t("Summarize: user ", EMAIL, " logged in from ", IP, " then from ", IP, " within a minute."),
    _t("Add to contacts -> ", "{name}", " | ", PHONE, " | ", EMAIL, " | ", "{company}"),
]


def pii_prompts(
    rng: random.Random, templates: list[Template] = TEMPLATES, count: int = PROMPTS, seed: int = SEED
) -> list[dict[str, Any]]:
    fakers = {locale: Faker(locale) for locale in LOCALES}
    for i, fake in enumerate(fakers.values()):
        fake.seed_instance(seed + i)
    records = []
    for _ in range(count):
        locale = "en_US" if rng.random() < 0.4 else rng.choice(LOCALES)
        index = rng.randrange(len(templates))
        record = templates[index](fakers[locale], rng).record(f"{index}/{locale}")
        records.append(record)
    return records


# -- secrets ------------------------------------------------------------------

ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
URLSAFE = ALNUM + "-_"


def rand(rng: random.Random, alphabet: str, n: int) -> str:
    return "".join(rng.choice(alphabet) for _ in range(n))


def hexs(rng: random.Random, n: int) -> str:
    return rand(rng, "0123456789abcdef", n)


def jwt(rng: random.Random) -> str:
    def part(obj: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    header = part({"alg": rng.choice(["HS256", "RS256"]), "typ": "JWT"})
    payload = part({"sub": str(rng.randint(1, 10**9)), "name": "Jane Roe", "iat": rng.randint(1.6e9, 1.8e9)})
    return f"{header}.{payload}.{rand(rng, URLSAFE, 43)}"


def pem(rng: random.Random, escaped: bool = False) -> str:
    kind = rng.choice(["RSA ", "EC ", "OPENSSH ", ""])
    lines = [rand(rng, B64, 64) for _ in range(rng.randint(6, 14))] + [rand(rng, B64, 20) + "=="]
    newline = "\\n" if escaped else "\n"
    return newline.join([f"-----BEGIN {kind}PRIVATE KEY-----", *lines, f"-----END {kind}PRIVATE KEY-----"])


def password(rng: random.Random) -> str:
    words = ["Summer", "Winter", "dragon", "Monkey", "sunshine", "Tr0ub4dor", "Passw0rd", "letmein", "Football"]
    return rng.choice(words) + str(rng.randint(1, 9999)) + rng.choice(["!", "#", "", "$", "?"])


# Each generator returns the secret; contexts place it in a realistic text.
SECRET_FORMATS: dict[str, Callable[[random.Random], str]] = {
    "AWS_ACCESS_KEY_ID": lambda r: r.choice(["AKIA", "ASIA"]) + rand(r, string.ascii_uppercase + "234567", 16),
    "AWS_SECRET_ACCESS_KEY": lambda r: rand(r, B64, 40),
    "GCP_API_KEY": lambda r: "AIza" + rand(r, URLSAFE, 35),
    "GCP_OAUTH_CLIENT_SECRET": lambda r: "GOCSPX-" + rand(r, URLSAFE, 28),
    "AZURE_STORAGE_KEY": lambda r: rand(r, B64, 86) + "==",
    "AZURE_CLIENT_SECRET": lambda r: rand(r, ALNUM, 3) + str(r.randint(0, 9)) + "Q~" + rand(r, ALNUM + "_~.-", 34),
    "GITHUB_TOKEN": lambda r: (
        r.choice(["ghp_", "gho_", "ghs_"]) + rand(r, ALNUM, 36)
        if r.random() < 0.7
        else "github_pat_" + rand(r, ALNUM, 22) + "_" + rand(r, ALNUM, 59)
    ),
    "GITLAB_TOKEN": lambda r: "glpat-" + rand(r, URLSAFE, 20),
    "SLACK_TOKEN": lambda r: (
        r.choice(["xoxb-", "xoxp-"])
        + str(r.randint(10**10, 10**12))
        + "-"
        + str(r.randint(10**10, 10**12))
        + "-"
        + rand(r, ALNUM, 24)
    ),
    "SLACK_WEBHOOK": lambda r: (
        "https://hooks.slack.com/services/T"
        + rand(r, string.ascii_uppercase + string.digits, 8)
        + "/B"
        + rand(r, string.ascii_uppercase + string.digits, 10)
        + "/"
        + rand(r, ALNUM, 24)
    ),
    "STRIPE_KEY": lambda r: r.choice(["sk_live_", "rk_live_", "sk_test_"]) + rand(r, ALNUM, r.choice([24, 99])),
    "OPENAI_API_KEY": lambda r: (
        "sk-proj-" + rand(r, URLSAFE, 156)
        if r.random() < 0.6
        else "sk-" + rand(r, ALNUM, 20) + "T3BlbkFJ" + rand(r, ALNUM, 20)
    ),
    "ANTHROPIC_API_KEY": lambda r: "sk-ant-api03-" + rand(r, URLSAFE, 93) + "AA",
    "TWILIO_API_KEY": lambda r: "SK" + hexs(r, 32),
    "SENDGRID_API_KEY": lambda r: "SG." + rand(r, URLSAFE, 22) + "." + rand(r, URLSAFE, 43),
    "JWT": jwt,
    "PRIVATE_KEY": lambda r: pem(r),
    "PRIVATE_KEY_JSON": lambda r: pem(r, escaped=True),
    "CONNECTION_STRING_PASSWORD": lambda r: rand(r, ALNUM + "!*-_", r.randint(10, 24)),
    "PASSWORD": password,
    "NPM_TOKEN": lambda r: "npm_" + rand(r, ALNUM, 36),
    "HUGGINGFACE_TOKEN": lambda r: "hf_" + rand(r, string.ascii_letters, 34),
    "GENERIC_SECRET": lambda r: rand(r, ALNUM, r.choice([24, 32, 40])),
}

# Where each kind of secret shows up. "{s}" is the secret.
SECRET_CONTEXTS: dict[str, list[str]] = {
    "AWS_ACCESS_KEY_ID": [
        "Why does boto3 say access denied? I set AWS_ACCESS_KEY_ID={s} in my .env",
        "[default]\naws_access_key_id = {s}\nregion = eu-west-1\nwhat is wrong with this profile?",
        'My Terraform provider block has access_key = "{s}", is that fine?',
    ],
    "AWS_SECRET_ACCESS_KEY": [
        "[default]\naws_access_key_id = AKIA{ak}\naws_secret_access_key = {s}\n\nWhy does the CLI ignore it?",
        'export AWS_SECRET_ACCESS_KEY="{s}"\nexport AWS_DEFAULT_REGION=us-east-1',
        '{{"AccessKeyId": "ASIA{ak}", "SecretAccessKey": "{s}", "SessionToken": "..."}} explain these fields',
    ],
    "GCP_API_KEY": [
        "fetch('https://maps.googleapis.com/maps/api/geocode/json?address=Paris&key={s}') returns 403, why?",
        "GOOGLE_API_KEY={s} works locally but not on Vercel",
    ],
    "GCP_OAUTH_CLIENT_SECRET": ['client_secret: "{s}"\nclient_id: 123-abc.apps.googleusercontent.com\nredirect fails'],
    "AZURE_STORAGE_KEY": [
        "DefaultEndpointsProtocol=https;AccountName=prodlogs;AccountKey={s};EndpointSuffix=core.windows.net "
        "- why does BlobServiceClient reject this?",
    ],
    "AZURE_CLIENT_SECRET": [
        'AZURE_CLIENT_SECRET="{s}" and AZURE_TENANT_ID set, still AADSTS7000215',
        "az login --service-principal -u http://app -p {s} --tenant contoso.onmicrosoft.com fails",
    ],
    "GITHUB_TOKEN": [
        "git clone https://{s}@github.com/acme/private-repo.git gives 403",
        "My workflow uses GH_TOKEN: {s} but the release step fails",
        "curl -H 'Authorization: token {s}' https://api.github.com/user returns 401",
    ],
    "GITLAB_TOKEN": ["GITLAB_TOKEN={s} glab auth login fails with 401", "PRIVATE-TOKEN: {s} header rejected"],
    "SLACK_TOKEN": ["SlackClient(token='{s}') raises invalid_auth", "SLACK_BOT_TOKEN={s}\nhow do I post to #ops?"],
    "SLACK_WEBHOOK": ['curl -X POST -d \'{{"text":"deploy done"}}\' {s} returns no_text'],
    "STRIPE_KEY": ["stripe.api_key = '{s}'\nstripe.Charge.create(...) fails", "STRIPE_SECRET_KEY={s} in prod env?"],
    "OPENAI_API_KEY": [
        'client = OpenAI(api_key="{s}")\nwhy do I get 429?',
        "OPENAI_API_KEY={s} python main.py prints auth error",
        "here is my key {s} can you check if it's valid",
    ],
    "ANTHROPIC_API_KEY": ["ANTHROPIC_API_KEY={s}\nclaude returns 401", "anthropic.Anthropic(api_key='{s}')"],
    "TWILIO_API_KEY": ["Twilio client = Client('{s}', secret, account_sid) fails"],
    "SENDGRID_API_KEY": ["sg = SendGridAPIClient('{s}') returns 403 forbidden", "SENDGRID_API_KEY={s}"],
    "JWT": [
        "Decode this token for me: {s}",
        "Authorization: Bearer {s}\n\nwhy is the API returning 401?",
        'localStorage.setItem("id_token", "{s}")',
    ],
    "PRIVATE_KEY": ["Is this key in the right format?\n{s}\nssh says invalid format", "{s}"],
    "PRIVATE_KEY_JSON": [
        '{{"type": "service_account", "project_id": "acme-prod", "private_key_id": "{h}", '
        '"private_key": "{s}\\n", "client_email": "ci@acme-prod.iam.gserviceaccount.com"}}'
    ],
    "CONNECTION_STRING_PASSWORD": [
        "DATABASE_URL=postgres://app_user:{s}@db.internal:5432/orders\nmigrations hang",
        "mongodb+srv://admin:{s}@cluster0.ab1cd.mongodb.net/test?retryWrites=true connection refused",
        "redis://default:{s}@redis-12345.c1.us-east-1.ec2.cloud.redislabs.com:12345 timeout",
        "SQLALCHEMY_DATABASE_URI = 'mysql+pymysql://root:{s}@localhost/shop'",
    ],
    "PASSWORD": [
        "my password is {s} but the login page says invalid",
        'DB_PASSWORD="{s}"\nDB_HOST=localhost',
        "spring.datasource.password={s}\nspring.datasource.username=admin",
        '{{"username": "admin", "password": "{s}"}} is the body I send, why 400?',
        "Server=tcp:sql.acme.net;Database=crm;User Id=sa;Password={s};Encrypt=true",
        "mysql -u root --password={s} -h 10.0.0.5",
    ],
    "NPM_TOKEN": ["//registry.npmjs.org/:_authToken={s}\nnpm publish fails with E401"],
    "HUGGINGFACE_TOKEN": ["huggingface-cli login --token {s}", "HF_TOKEN={s} and the model download is 401"],
    "GENERIC_SECRET": [
        'api_key: "{s}"\nendpoint: https://api.weatherly.io/v2',
        "MAPBOX_SECRET_TOKEN={s}",
        "headers = {{'X-Api-Key': '{s}'}}",
        "config.client_secret = '{s}'",
    ],
}


def secret_positives(rng: random.Random) -> list[dict[str, Any]]:
    positives = []
    for kind, generate in SECRET_FORMATS.items():
        contexts = SECRET_CONTEXTS[kind]
        for i in range(SECRETS_PER_TYPE):
            secret = generate(rng)
            template = contexts[i % len(contexts)]
            head, tail = template.split("{s}", 1)
            fill = {"ak": rand(rng, string.ascii_uppercase + "234567", 16), "h": hexs(rng, 40)}
            head, tail = head.format(**fill), tail.format(**fill)
            text = head + secret + tail
            positives.append({"type": kind, "text": text, "start": len(head), "end": len(head) + len(secret)})
    return positives


def camel(rng: random.Random) -> str:
    words = ["get", "user", "account", "settings", "for", "tenant", "handle", "request", "token", "refresh"]
    words += ["build", "secret", "manager", "factory", "provider", "password", "reset", "validator", "async"]
    parts = [rng.choice(words) for _ in range(rng.randint(3, 7))]
    name = parts[0] + "".join(p.title() for p in parts[1:])
    return name + (str(rng.randint(1, 3)) if rng.random() < 0.3 else "")


NEGATIVES: dict[str, list[Callable[[random.Random], str]]] = {
    "uuid": [
        lambda r: f"The request id {uuid.UUID(int=r.getrandbits(128), version=4)} failed with 500, what happened?",
        lambda r: f'{{"id": "{uuid.UUID(int=r.getrandbits(128), version=4)}", "status": "active"}}',
        lambda r: f"tenant_id = {uuid.UUID(int=r.getrandbits(128), version=4)}",
    ],
    "git_sha": [
        lambda r: f"commit {hexs(r, 40)}\nAuthor: Dev <dev@example.com>\n\n    fix race in cache",
        lambda r: f"git revert {hexs(r, 7)} broke the build, and {hexs(r, 40)} too",
        lambda r: f"Pin the action to uses: actions/checkout@{hexs(r, 40)}",
    ],
    "checksum": [
        lambda r: f"sha256sum says {hexs(r, 64)}  pointsman-0.1.0.tar.gz, does it match?",
        lambda r: f"MD5 ({camel(r)}.zip) = {hexs(r, 32)}",
        lambda r: f"image: ghcr.io/acme/api@sha256:{hexs(r, 64)}",
        lambda r: f'"integrity": "sha512-{base64.b64encode(r.randbytes(64)).decode()}"',
    ],
    "base64": [
        lambda r: (
            f"What image is this? data:image/png;base64,{base64.b64encode(r.randbytes(r.randint(48, 300))).decode()}"
        ),
        lambda r: f'{{"payload": "{base64.b64encode(r.randbytes(r.randint(30, 200))).decode()}"}} decode it',
        lambda r: (
            "-----BEGIN CERTIFICATE-----\n"
            + "\n".join(base64.b64encode(r.randbytes(48)).decode() for _ in range(6))
            + "\n-----END CERTIFICATE-----\nis this cert expired?"
        ),
        lambda r: f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{rand(r, B64, 43)} dev@laptop - add this public key",
    ],
    "camel_case": [
        lambda r: f"Why is {camel(r)}() returning null when {camel(r)} is set?",
        lambda r: f"const {camel(r)} = await {camel(r)}({camel(r)});",
        lambda r: f"refactor {camel(r)}, {camel(r)} and {camel(r)} into one class",
    ],
    "file_path": [
        lambda r: f"/usr/lib/python3.11/site-packages/{camel(r)}/{camel(r)}_{hexs(r, 8)}.py line 42 raises",
        lambda r: f"C:\\Users\\{camel(r)}\\AppData\\Local\\Temp\\{uuid.UUID(int=r.getrandbits(128))}.tmp is locked",
        lambda r: f"~/.cache/huggingface/hub/models--acme--{camel(r)}/snapshots/{hexs(r, 40)}/config.json",
    ],
    "placeholder": [
        lambda r: "password: <your-password>\nusername: <your-user>",
        lambda r: "DB_PASSWORD=${DB_PASSWORD}\nAPI_KEY=${API_KEY}",
        lambda r: "export OPENAI_API_KEY=sk-...\nexport ANTHROPIC_API_KEY=your-api-key-here",
        lambda r: "DATABASE_URL=postgres://user:password@localhost:5432/db",
        lambda r: "def connect(host: str, password: str = None) -> Connection:",
        lambda r: "password = os.environ['DB_PASSWORD']\ntoken = get_token(user)",
        lambda r: "The password must be at least 12 characters and the token expires in 3600 seconds.",
        lambda r: "Set api_key to your own key, e.g. api_key = 'YOUR_API_KEY'",
    ],
    "prose": [
        lambda r: "How do I rotate the secret key safely without downtime? Our token service is stateless.",
        lambda r: "What's the difference between an access token and a refresh token in OAuth?",
        lambda r: "Explain how JWT signing works and why the secret must stay on the server.",
        lambda r: f"My colleague {camel(r)} forgot the password again; how do I reset it in Okta?",
    ],
    "url": [
        lambda r: f"https://github.com/acme/{camel(r)}/blob/{hexs(r, 40)}/src/main.py#L10",
        lambda r: f"https://example.com/reset?id={uuid.UUID(int=r.getrandbits(128))}&page=2",
        lambda r: f"next_page_token: {base64.urlsafe_b64encode(r.randbytes(36)).decode()}",
        lambda r: "postgres://localhost:5432/app and redis://cache:6379/0 are the defaults",
    ],
    "identifier": [
        lambda r: f"order {rand(r, string.ascii_uppercase + string.digits, 20)} shipped",
        lambda r: f"License key format looks like {'-'.join(rand(r, string.ascii_uppercase, 5) for _ in range(5))}",
        lambda r: (
            f"Build {hashlib.md5(r.randbytes(8)).hexdigest()[:12]} passed; artifact {camel(r)}-{r.randint(1, 99)}.jar"
        ),
        lambda r: f"Twilio account SID AC{hexs(r, 32)} appears in the console",
    ],
}


def secret_negatives(rng: random.Random) -> list[dict[str, Any]]:
    negatives = []
    for kind, makers in NEGATIVES.items():
        for i in range(NEGATIVES_PER_KIND):
            negatives.append({"kind": kind, "text": makers[i % len(makers)](rng)})
    return negatives


def main() -> None:
    rng = random.Random(SEED)
    Faker.seed(SEED)
    prompts = pii_prompts(rng)
    (HERE / "faker_prompts.json").write_text(json.dumps(prompts, indent=1, ensure_ascii=False) + "\n")
    corpus = {"positives": secret_positives(rng), "negatives": secret_negatives(rng)}
    (HERE / "secrets_corpus.json").write_text(json.dumps(corpus, indent=1) + "\n")
    held_out = pii_prompts(random.Random(SEED + 1), HELD_OUT_TEMPLATES, 400, SEED + 100)
    (HERE / "faker_heldout.json").write_text(json.dumps(held_out, indent=1, ensure_ascii=False) + "\n")
    unseen = pii_prompts(random.Random(SEED + 2), UNSEEN_TEMPLATES, 400, SEED + 200)
    (HERE / "faker_unseen.json").write_text(json.dumps(unseen, indent=1, ensure_ascii=False) + "\n")
    print(
        f"{len(prompts)} prompts, {len(held_out)} + {len(unseen)} held-out prompts, "
        f"{len(corpus['positives'])} secrets, {len(corpus['negatives'])} hard negatives"
    )


if __name__ == "__main__":
    main()
