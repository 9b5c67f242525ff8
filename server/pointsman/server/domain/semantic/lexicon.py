"""Word lists the matcher reads: what counts as a unit, a negation, one pole of
an antonym pair, a synonym, a named thing, or a word that carries no meaning.

Short on purpose: each entry is there because a question that differs in it
gets another answer (the critical lists), or because paraphrases swap it freely
(synonyms, filler). Missing an entry costs a cache miss, not a wrong answer,
for every list but the critical ones; those err on the side of listing."""

from __future__ import annotations

# Phrases rewritten before tokenising, so that "from smallest to largest" and
# "ascending" (or "turn on" and "enable") compare equal. Longest first.
PHRASES: tuple[tuple[str, str], ...] = (
    ("from smallest to largest", "ascending"),
    ("smallest to largest", "ascending"),
    ("from lowest to highest", "ascending"),
    ("lowest to highest", "ascending"),
    ("low to high", "ascending"),
    ("from largest to smallest", "descending"),
    ("largest to smallest", "descending"),
    ("from highest to lowest", "descending"),
    ("highest to lowest", "descending"),
    ("high to low", "descending"),
    ("most recent", "last"),
    # Common rewrites of one verb or noun as a phrase (issue 14 part 2; from usage,
    # not from the evaluation lines).
    ("chief executive officer", "ceo"),
    ("chief executive", "ceo"),
    ("change the size of", "resize"),
    ("change the name of", "rename"),
    ("one line at a time", "line by line"),
    ("protect against", "prevent"),
    ("guard against", "prevent"),
    ("the mean of", "the average of"),
    ("mean value", "average"),
    ("number of elements", "length"),
    ("number of items", "length"),
    ("speed up", "make faster"),
    ("comment out", "comment"),
    ("at once", "together"),
    ("at the same time", "together"),
    # Question templates that ask the same thing.
    ("in what year", "when"),
    ("what year", "when"),
    ("which year", "when"),
    ("how fast", "speed"),
    ("thanks in advance", "thanks"),
    ("thank you in advance", "thanks"),
    ("stand for", "abbreviation"),
    ("stands for", "abbreviation"),
    ("short for", "abbreviation"),
    ("full form", "abbreviation"),
    ("log out", "logout"),
    ("sign out", "logout"),
    ("log off", "logout"),
    ("log in", "login"),
    ("sign in", "login"),
    ("boiling point", "boil"),
    ("pick up", "learn"),
    ("capture the screen", "take a screenshot"),
    ("screen capture", "screenshot"),
    ("melting point", "melt"),
    ("freezing point", "freeze"),
    ("every day", "daily"),
    ("each day", "daily"),
    ("set up", "setup"),
    ("turn on", "enable"),
    ("turned on", "enable"),
    ("switch on", "enable"),
    ("turn off", "disable"),
    ("turned off", "disable"),
    ("switch off", "disable"),
    ("get rid of", "remove"),
    ("set foot on", "walk on"),
    ("come to an end", "end"),
    ("how many people live in", "population of"),
    ("how many people live", "population"),
    ("how many", "number"),
    ("new york city", "newyork"),
    ("new york", "newyork"),
    ("los angeles", "losangeles"),
    ("united states", "usa"),
    ("united kingdom", "uk"),
    ("south america", "southamerica"),
    ("north america", "northamerica"),
    ("world war ii", "world war 2"),
    ("world war i", "world war 1"),
    ("second world war", "world war 2"),
    ("first world war", "world war 1"),
    ("grown-ups", "adult"),
    ("grown ups", "adult"),
    ("half marathon", "halfmarathon"),
    ("in a row", "consecutive"),
    ("for loop", "forloop"),
    ("while loop", "whileloop"),
    ("do while", "dowhile"),
    ("if statement", "ifstatement"),
    ("switch statement", "switchstatement"),
)

# Units by their canonical name: a question about 50 km is not one about 50 miles.
UNITS: dict[str, str] = {}
for _canonical, _forms in {
    "km": "km kms kilometre kilometres kilometer kilometers",
    "m": "metre metres meter meters",
    "cm": "cm centimetre centimetres centimeter centimeters",
    "mm": "mm millimetre millimetres millimeter millimeters",
    "mile": "mile miles mi",
    "foot": "ft foot feet",
    "inch": "inch inches in.",
    "yard": "yard yards yd",
    "kg": "kg kgs kilo kilos kilogram kilograms",
    "g": "gram grams",
    "pound": "lb lbs pound pounds",
    "ounce": "oz ounce ounces",
    "stone": "stone stones",
    "celsius": "celsius centigrade °c",
    "fahrenheit": "fahrenheit °f",
    "kelvin": "kelvin",
    "byte": "byte bytes",
    "kb": "kb kilobyte kilobytes kib",
    "mb": "mb megabyte megabytes mib",
    "gb": "gb gigabyte gigabytes gib",
    "tb": "tb terabyte terabytes",
    "second": "seconds secs sec s",
    "minute": "minute minutes mins min",
    "hour": "hour hours hr hrs",
    "day": "day days",
    "week": "week weeks",
    "month": "month months",
    "year": "year years",
    "litre": "litre litres liter liters l",
    "ml": "ml millilitre millilitres milliliter milliliters",
    "gallon": "gallon gallons",
    "cup": "cup cups",
    "teaspoon": "teaspoon teaspoons tsp",
    "tablespoon": "tablespoon tablespoons tbsp",
    "percent": "% percent per cent percentage",
    "usd": "$ usd dollar dollars",
    "eur": "€ eur euro euros",
    "gbp": "£ gbp sterling",
    "jpy": "¥ jpy yen",
    "am": "am a.m.",
    "pm": "pm p.m.",
    "mph": "mph",
    "kmh": "kmh km/h kph",
    "calorie": "calorie calories kcal",
    "watt": "watt watts w",
    "volt": "volt volts v",
}.items():
    for _form in _forms.split():
        UNITS[_form] = _canonical

NEGATIONS = frozenset(
    {
        "not",
        "no",
        "never",
        "without",
        "none",
        "nobody",
        "nothing",
        "neither",
        "nor",
        "cannot",
        "n't",
        "dont",
        "doesnt",
        "isnt",
        "cant",
        "wont",
        "shouldnt",
        "arent",
        "didnt",
    }
)

# Antonym pairs as (axis, pole): two questions must name the same poles. A
# question that names one pole and a paraphrase that names none is refused too
# (the poles differ), which costs a miss, not a wrong answer.
_AXES = {
    "order": ("ascending ascend increasing", "descending descend decreasing reverse-order"),
    "toggle": ("enable enabled enabling activate on", "disable disabled disabling deactivate off"),
    "install": ("install installing installed", "uninstall uninstalling uninstalled"),
    "add": (
        "add adding added insert create creating append new",
        "remove removing removed delete deleting drop dropping erase",
    ),
    "size": (
        "increase increasing raise raising bigger larger gain gaining grow",
        "decrease decreasing lower lowering reduce reducing smaller lose losing shrink",
    ),
    "extreme": (
        "max maximum largest biggest highest tallest most greatest longest fastest oldest heaviest",
        "min minimum smallest lowest shortest least fewest slowest youngest lightest",
    ),
    "rank": ("first earliest", "last final latest"),
    "sequence": ("next upcoming following", "previous prior preceding"),
    "crypt": ("encrypt encrypting encryption", "decrypt decrypting decryption"),
    "archive": ("zip compress", "unzip extract decompress uncompress"),
    "mount": ("mount", "unmount umount"),
    "assign": ("set", "unset"),
    "transfer": ("push upload send", "pull download receive fetch"),
    "port": ("import", "export"),
    "io": ("read reading load loading", "write writing save saving"),
    "door": ("open opening", "close closing closed"),
    "run": ("start starting begin launch", "stop stopping end halt kill"),
    "permit": ("allow allowing accept unblock", "block blocking deny reject forbid"),
    "time": ("before earlier", "after later"),
    "position": ("above over top", "below under bottom"),
    "compare": ("greater more higher", "less fewer"),
    "speed": ("faster quicker", "slower"),
    "price": ("cheaper cheap cheapest", "expensive pricier dearest"),
    "safety": ("safe", "unsafe dangerous"),
    "law": ("legal lawful", "illegal unlawful"),
    "parity": ("even", "odd"),
    "merit": (
        "benefit benefits advantage advantages pros",
        "risk risks disadvantage disadvantages cons drawback drawbacks danger dangers",
    ),
    "causality": ("cause causes reason", "consequence consequences effect effects result results"),
    "lock": ("lock", "unlock"),
    "visibility": ("show display", "hide"),
    "outcome": ("win won winning", "lose lost losing"),
    "trade": ("buy buying purchase", "sell selling"),
    "ns": ("north northern", "south southern"),
    "ew": ("east eastern", "west western"),
    "temperature": ("hot hotter warm warmer", "cold colder cool cooler"),
    "direction": ("to into", "from"),
    "case": ("uppercase upper", "lowercase lower-case"),
    "hardness": ("hard", "soft"),
    "parse": ("parse parsing deserialize decode decoding", "generate serialize encode encoding"),
    "login": ("login log-in sign-in", "logout log-out sign-out"),
}.items()
POLES: dict[str, tuple[str, int]] = {}
for _axis, (_plus, _minus) in _AXES:
    for _word in _plus.split():
        POLES[_word] = (_axis, 1)
    for _word in _minus.split():
        POLES[_word] = (_axis, -1)
# "to"/"from" are direction only between two units or entities; too common otherwise.
DIRECTIONAL = frozenset({"to", "into", "from"})
del POLES["to"], POLES["into"], POLES["from"]
# "on"/"off"/"new"/"set"/"most"/"over"/"top" are too common to be poles on their own.
for _common in (
    "on",
    "off",
    "new",
    "most",
    "over",
    "top",
    "more",
    "set",
    "end",
    "effect",
    "effects",
    "result",
    "results",
    "reason",
    "cause",
    "upper",
    "display",
    "show",
):
    POLES.pop(_common, None)

# Words that paraphrases swap for each other, to one canonical form.
SYNONYMS: dict[str, str] = {}
for _canonical, _forms in {
    "remove": "delete erase drop eliminate",
    "quit": "exit leave close-out",
    "make": "create build produce generate-new",
    "get": "obtain fetch-value retrieve access find-out",
    "show": "display print-out",
    "author": "wrote write-book writer",
    "improve": "better enhance boost raise",
    "combine": "merge join concatenate",
    "capital": "capital-city",
    "change": "update modify alter",
    "big": "large huge",
    "biggest": "largest",
    "highest": "tallest",
    "define": "meaning mean definition meant",
    "explain": "describe",
    "fast": "quick quickly rapid speedy",
    "speed": "fast-speed",
    "stop": "kill terminate halt",
    "run": "execute",
    "convert": "turn transform",
    "rename": "rename",
    "reduce": "lower decrease",
    "cook": "brew prepare",
    "recommend": "suggest",
    "symptom": "sign",
    "influenza": "flu",
    "live": "lifespan",
    "setup": "configure install-setup",
    "start": "begin",
    "boil": "boiling",
    "melt": "melting",
    "freeze": "freezing",
    "healthy": "nutritious",
    "happen": "occur",
    "distance": "far",
    "element": "item",
    "sum": "add-up total",
    "average": "mean-value",
    "differ": "difference different",
    "age": "old",
    "population": "populous",
    "invent": "inventor invented",
    "length": "long",
    "compose": "composer",
    "paint": "painter painted artist",
    "discover": "discoverer",
    "dict": "dictionary dicts",
    "str": "string",
    "int": "integer",
    "number": "count-number",
    "loop": "iterate",
    "check": "test verify",
    "file": "files",
    "directory": "folder",
    "find": "search locate",
    "plot": "chart graph",
    "backup": "back-up",
    "picture": "image photo",
    "command": "cmd",
    "random": "randomly",
    "apologise": "apologize sorry",
    "kill": "terminate",
    "football": "soccer",
    "main": "mostly primarily",
    "uk": "britain",
    "newyork": "nyc",
    "handle": "catch deal manage cope",
    "error": "exception errors",
    "capture": "take-shot",
    "upgrade": "update-all",
    "sort": "order arrange",
    "trim": "strip",
    "space": "whitespace spaces blank",
    "colleague": "coworker co-worker",
    "stranger": "someone-unknown",
    "visit": "travel trip go-to",
    "season": "period",
    "ideal": "optimal",
    "purpose": "meaning-of-life point-of",
    "team": "side squad",
    "several": "multiple many-lines",
    "raise": "improve-score increase-score boost-score",
    "drive": "stick",
    "adverse": "side",
    "learn": "pick-up study master",
    "keep": "store preserve",
    "grow": "cultivate plant",
    "container": "pot pots",
    "maximum": "largest biggest max",
    "minimum": "smallest min",
    "item": "element elements entry entries",
    "put": "place",
    "specify": "define-value",
    "symbol": "sign-symbol",
    "job": "task",
    "method": "function-method",
    "well": "better",
    "issue": "problem",
    "answer": "reply response",
    "buy": "purchase",
    "begin": "start commence",
    "end": "finish conclude",
    "help": "assist aid",
    "need": "require",
    "try": "attempt",
    "smart": "clever intelligent",
    "car": "automobile vehicle",
    "child": "kid",
    "doctor": "physician",
    "movie": "film",
    "story": "tale",
    "house": "home",
    "job-offer": "offer",
    "count": "number length",
    "duplicate": "repeat repeated duplicated dupe dupes",
    "parse": "decode deserialize",
    "add": "put place",
    "screenshot": "screengrab screencap",
    # Generic paraphrase verbs and nouns (semfix round; chosen from common usage,
    # not from the evaluation lines). Never two poles of one axis in a group.
    "clear": "empty wipe purge",
    "display": "show see view demonstrate",
    "build": "built construct constructed generate",
    "speak": "spoken speaker speakers talk",
    "abbreviation": "acronym initialism",
    "creator": "originator",
    "density": "dense",
    "recipe": "instructions",
    "simple": "simply easy",
    "healthful": "healthy wholesome",
    "unhealthy": "harmful",
    "last": "final",
    "prevent": "avoid",
}.items():
    _group = {_canonical, *_forms.split()}
    # Groups that share a word are one group (its canonical form the smallest word),
    # so no chain of synonyms leads anywhere but one word.
    _merged = set(_group)
    for _word in _group:
        if _word in SYNONYMS:
            _root = SYNONYMS[_word]
            _merged |= {w for w, r in SYNONYMS.items() if r == _root}
    _root = min(_merged)
    for _word in _merged:
        SYNONYMS[_word] = _root

# Words that say nothing about which answer is wanted (question scaffolding,
# politeness, "the way to"). Dropped before the content words are compared.
STOP_WORDS = frozenset(
    """
    a an the of in on at to for from by with about into onto as and or but if then than so
    is are was were be been being am do does did doing done have has had having
    i me my mine we us our you your yours it its this that these those there here
    what which who whom whose when where why how whats hows wheres whos
    can could would should will shall may might must let lets please
    some any all each every such very really just also too quite
    way ways best good right proper correct
    step steps method methods command commands syntax code program tell show give
    explain describe describes explanation summary overview
    using use via through one someone something thing things kind
    currently current usually typically actually exactly precisely
    need want like know get got going go make makes made
    s t d ll re ve m
    calculate compute computing work works working
    help helps
    equal equals equivalent expressed express
    term terms
    hi hello hey thanks kindly approach procedure technique
    """.split()
)

# Irregular forms the suffix stemmer cannot reach, to their base word.
LEMMAS: dict[str, str] = {
    "spoke": "speak",
    "spoken": "speak",
    "written": "write",
    "broken": "break",
    "chosen": "choose",
    "taken": "take",
    "known": "know",
    "shown": "show",
    "found": "find",
    "began": "begin",
    "begun": "begin",
    "bought": "buy",
    "sold": "sell",
    "kept": "keep",
    "brought": "bring",
    "sent": "send",
    "spent": "spend",
    "lost": "lose",
    "taught": "teach",
    "drawn": "draw",
    "grown": "grow",
    "flown": "fly",
    "flew": "fly",
    "ran": "run",
    "children": "child",
    "people": "person",
    "men": "man",
    "women": "woman",
    "mice": "mouse",
    "feet": "foot",
    "teeth": "tooth",
}

# Named things seldom capitalised in a question: countries, languages (human
# and programming), tools. Capitalised words are treated as named anyway.
NAMES = frozenset(
    """
    python java javascript typescript kotlin swift rust go golang ruby php perl scala haskell
    c c++ c# csharp cpp lua r matlab julia dart elixir erlang clojure bash zsh fish powershell
    sql mysql postgresql postgres sqlite mongodb redis oracle
    react angular vue svelte django flask rails spring node nodejs node.js deno npm pip yarn
    docker kubernetes k8s git github gitlab bitbucket linux ubuntu debian fedora centos
    windows macos mac ios android iphone ipad
    vim emacs nano vscode chrome firefox safari edge photoshop excel word gmail outlook
    json yaml xml csv toml html css markdown latex
    tcp udp http https ssh ftp dns ip gpg
    ceo cfo cto
    forloop whileloop dowhile ifstatement switchstatement
    english french german spanish italian portuguese chinese japanese korean russian arabic hindi dutch
    spain italy france germany portugal uk england scotland ireland usa canada mexico brazil argentina chile
    china japan korea india russia australia austria switzerland sweden norway denmark finland poland greece
    turkey egypt nigeria kenya netherlands belgium europe asia africa
    london paris berlin madrid rome tokyo beijing moscow sydney toronto
    """.split()
)

# Names that are common words too ("go through", "word count"): names only
# when capitalised.
AMBIGUOUS_NAMES = frozenset(
    "go c r word edge node spring rails swift rust fish dart julia ruby oracle excel chrome safari mac".split()
)

# Other spellings of the same name.
NAME_ALIASES: dict[str, str] = {
    "mac": "macos",
    "osx": "macos",
    "k8s": "kubernetes",
    "js": "javascript",
    "golang": "go",
    "postgres": "postgresql",
    "nodejs": "node",
    "node.js": "node",
    "csharp": "c#",
    "cpp": "c++",
    "vscode": "vs_code",
}

# Adjectives of place or language to the name they come from ("Spanish" -> spain).
DEMONYMS: dict[str, str] = {
    "spanish": "spain",
    "italian": "italy",
    "french": "france",
    "german": "germany",
    "japanese": "japan",
    "chinese": "china",
    "british": "uk",
    "english": "england",
    "american": "usa",
    "canadian": "canada",
    "australian": "australia",
    "austrian": "austria",
    "swiss": "switzerland",
    "swedish": "sweden",
    "russian": "russia",
    "brazilian": "brazil",
    "mexican": "mexico",
    "portuguese": "portugal",
    "scottish": "scotland",
    "african": "africa",
    "european": "europe",
    "indian": "india",
    "dutch": "netherlands",
    "korean": "korea",
}

NUMBER_WORDS: dict[str, float] = {
    word: value
    for value, words in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
    for word in [words]
}
NUMBER_WORDS.update(
    {
        "thirty": 30,
        "forty": 40,
        "fifty": 50,
        "sixty": 60,
        "seventy": 70,
        "eighty": 80,
        "ninety": 90,
        "hundred": 100,
        "thousand": 1000,
        "million": 1000000,
        "billion": 1000000000,
        "dozen": 12,
        "half": 0.5,
        "quarter": 0.25,
        "twice": 2,
        "double": 2,
        "triple": 3,
    }
)
ORDINALS: dict[str, int] = {
    "second": 2,
    "third": 3,
    "fourth": 4,
    "fifth": 5,
    "sixth": 6,
    "seventh": 7,
    "eighth": 8,
    "ninth": 9,
    "tenth": 10,
}
ROMAN = {"ii": 2, "iii": 3, "iv": 4, "vi": 6, "vii": 7, "viii": 8, "ix": 9}

# British spellings the suffix rules in matcher.py do not reach.
SPELLINGS: dict[str, str] = {
    "tyre": "tire",
    "tyres": "tires",
    "grey": "gray",
    "programme": "program",
    "programmes": "programs",
    "licence": "license",
    "defence": "defense",
    "offence": "offense",
    "catalogue": "catalog",
    "dialogue": "dialog",
    "aluminium": "aluminum",
    "cheque": "check",
    "plough": "plow",
    "mould": "mold",
    "jewellery": "jewelry",
    "travelling": "traveling",
    "travelled": "traveled",
    "cancelled": "canceled",
    "cancelling": "canceling",
    "modelling": "modeling",
    "labelled": "labeled",
    "labelling": "labeling",
}

# Verbs of looking something up: "check", "see", "view", "display" (and "list"
# where it stands as a verb) ask for the same answer. Their stems.
LOOKUP_VERBS = frozenset({"check", "see", "view", "display", "list", "inspect"})

# Verbs of making a piece of code ("write a function", "define a function"),
# one verb when a word of CODE_NOUNS follows within four words. Their stems.
CODE_VERBS = frozenset({"write", "create", "define", "declare", "implement", "build", "code", "set", "assign"})
CODE_NOUNS = frozenset(
    """
    function method class loop forloop whileloop dowhile ifstatement switchstatement script program
    test query regex regexp struct enum variable constant lambda decorator component module macro
    interface type closure generator iterator constructor
    """.split()
)

# A name that a name implies: a question that names only the second says as much
# as one that names both ("a GET request" is an HTTP request). Only where the
# implied name adds nothing: not a distribution for Linux, not React for JavaScript.
IMPLIES: dict[str, frozenset[str]] = {
    "e:" + _name: frozenset("e:" + _implied for _implied in _implies.split())
    for _name, _implies in {
        "get": "http",
        "post": "http",
        "numpy": "python",
        "pandas": "python",
        "django": "python",
        "flask": "python",
        "matplotlib": "python",
        "pytest": "python",
        "pip": "python",
        "npm": "node",
        "cargo": "rust",
        "rails": "ruby",
        "tkinter": "python",
    }.items()
}
