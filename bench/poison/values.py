"""Slot fillers for ``bench/poison/templates.py``: brands, domains, URLs and random-but-valid personal data.

Every value is made from a seeded ``random.Random``: names, numbers and keys are random, never a real
person's; card numbers pass the Luhn check, IBANs their mod-97 check, SSNs the issuing rules, and tokens
have the shape their issuers document (AKIA + 16, ghp_ + 36, xoxb-…, sk-…). Domains are invented, or
look-alikes of well-known brands (the shape a phishing link takes), never the brands' own.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable

ALNUM = string.ascii_letters + string.digits

BRAND_HEADS = ("Nova", "Bright", "Quanta", "Zenith", "Apex", "Lumen", "Swift", "Peak", "Orbit", "Maple", "Cedar",
               "Pixel", "Vita", "Echo", "Atlas", "Blue", "Golden", "Iron", "Polar", "Sunny")  # fmt: skip
BRAND_TAILS = ("Learn", "Mart", "Pay", "Bank", "Cart", "Tutor", "Fit", "Brew", "Wear", "Labs", "Go", "Box", "Hub",
               "ly", "ify", "Wise", "Deals", "Gear")  # fmt: skip
REAL_BRANDS = ("Coca-Cola", "Nike", "Starbucks", "Samsung", "Tesla", "McDonald's", "Red Bull", "Adidas", "IKEA",
               "Spotify", "Uber Eats", "Duolingo", "Walmart", "Target", "Costco", "Lego", "Pepsi", "Sony")  # fmt: skip
PRODUCTS = ("math tutoring app", "budget planner", "VPN", "protein shake", "energy drink", "online course",
            "crypto wallet", "pair of running shoes", "meal kit", "calculator", "credit card", "savings account",
            "smartwatch", "coffee blend", "note-taking app", "backpack", "streaming plan", "phone plan")  # fmt: skip
SLOGANS = ("Think faster", "Because you deserve more", "Smarter every day", "Just add numbers", "Count on us",
           "Life, upgraded", "Taste the difference", "Save big, live bright", "The future is now")  # fmt: skip
SNACKS = ("chocolate bar", "iced latte", "smoothie", "burger", "soda", "granola bar")
WORDS = ("math", "quick", "study", "smart", "homework", "answer", "tutor", "brain", "solve", "easy", "pro", "daily",
         "free", "deal", "best", "top", "cloud", "secure", "learn", "calc", "coupon", "promo", "edu", "kids")  # fmt: skip
TLDS = ("com", "com", "net", "io", "shop", "xyz", "co", "app", "ai", "store", "info", "top", "online", "site",
        "co.uk", "de", "ru", "cn", "biz", "click")  # fmt: skip
SHORTENERS = ("bit.ly", "tinyurl.com", "t.co", "is.gd", "rb.gy", "cutt.ly", "shorturl.at", "ow.ly", "tiny.cc")
CHAT_HOSTS = ("discord.gg", "t.me", "chat.whatsapp.com")
PHISH_BRANDS = ("paypal", "apple", "microsoft", "google", "amazon", "netflix", "chase", "wellsfargo", "coinbase",
                "binance", "github", "dropbox", "docusign", "fedex", "dhl", "usps", "irs", "outlook", "office365",
                "instagram", "facebook", "steam")  # fmt: skip
PHISH_BRAND_NAMES = ("PayPal", "Apple ID", "Microsoft 365", "Google", "Amazon", "Netflix", "Chase", "Coinbase",
                     "GitHub", "Dropbox", "DocuSign", "FedEx", "Instagram", "Steam", "Outlook")  # fmt: skip
LOOKALIKE_WORDS = ("secure", "login", "verify", "account", "support", "update", "billing", "auth", "signin", "help")
HOMOGLYPHS = {"a": "а", "e": "е", "o": "о", "p": "р", "c": "с", "i": "і"}  # Latin -> Cyrillic look-alikes
FIRST = ("James", "Maria", "Wei", "Aisha", "Lukas", "Sofia", "Rahul", "Emma", "Diego", "Hana", "Omar", "Chloe",
         "Mateo", "Priya", "Noah", "Yuki", "Fatima", "Liam", "Elena", "Kwame")  # fmt: skip
LAST = ("Hartley", "Novak", "Okafor", "Lindqvist", "Moreau", "Tanaka", "Castillo", "Brennan", "Kowalski", "Haddad",
        "Sato", "Fischer", "Mensah", "Rossi", "Patel", "Weber", "Quinn", "Dubois")  # fmt: skip
MAIL_HOSTS = ("gmail.com", "outlook.com", "yahoo.com", "protonmail.com", "icloud.com", "hotmail.co.uk", "gmx.de",
              "mail.ru", "fastmail.fm", "aol.com")  # fmt: skip
STREETS = ("Elm Street", "Oak Avenue", "Maple Drive", "Hill Road", "Lake View", "Station Road", "Main Street")
CITIES = (("Springfield", "IL 62704"), ("Austin", "TX 78701"), ("Leeds", "LS1 4AP"), ("Portland", "OR 97205"),
          ("Munich", "80331"), ("Lyon", "69002"))  # fmt: skip


def brand(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return rng.choice(REAL_BRANDS)
    return rng.choice(BRAND_HEADS) + rng.choice(BRAND_TAILS)


def domain(rng: random.Random) -> str:
    words = rng.sample(WORDS, rng.choice((1, 2, 2, 3)))
    name = rng.choice(("", "-")).join(words) + (str(rng.randint(1, 99)) if rng.random() < 0.2 else "")
    return f"{name}.{rng.choice(TLDS)}"


def path(rng: random.Random) -> str:
    parts = rng.sample(("p", "lesson", "free", "go", "worksheets", "answers", "r", "ref", "promo", "math", "video"), 2)
    return "/".join([*parts, "".join(rng.choices(ALNUM, k=rng.randint(3, 8)))])


def url(rng: random.Random) -> str:
    scheme = rng.choice(("https://", "https://", "http://", "https://www."))
    tail = rng.choice(("", f"/{path(rng)}", f"/{path(rng)}", f"/{path(rng)}?utm_source=gsm&utm_medium=answer"))
    return f"{scheme}{domain(rng)}{tail}"


def short(rng: random.Random) -> str:
    scheme = rng.choice(("", "https://", "http://"))
    return f"{scheme}{rng.choice(SHORTENERS)}/{''.join(rng.choices(ALNUM, k=rng.randint(5, 8)))}"


def ip_url(rng: random.Random) -> str:
    ip = ".".join(str(rng.randint(11, 223)) for _ in range(4))
    port = rng.choice(("", ":8080", ":8000", ":443", ":3000"))
    return f"http://{ip}{port}/{path(rng)}"


def lookalike(rng: random.Random) -> str:
    """A domain that reads as a brand's at a glance: digit swaps, rn for m, hyphenated extras, homoglyphs."""
    name = rng.choice(PHISH_BRANDS)
    trick = rng.randrange(6)
    if trick == 0:
        name = name.replace("o", "0", 1).replace("l", "1", 1) if any(c in name for c in "ol") else name + "-secure"
    elif trick == 1:
        name = name.replace("m", "rn", 1) if "m" in name else name + name[-1]
    elif trick == 2:
        name = f"{name}-{rng.choice(LOOKALIKE_WORDS)}"
    elif trick == 3:
        name = f"{rng.choice(LOOKALIKE_WORDS)}-{name}"
    elif trick == 4:
        name = f"{name}.{rng.choice(LOOKALIKE_WORDS)}-{rng.choice(('center', 'portal', 'id'))}"
    else:
        return punycode(rng, name)
    return f"{name}.{rng.choice(('com', 'net', 'co', 'info', 'support', 'io', 'app'))}"


def punycode(rng: random.Random, name: str | None = None) -> str:
    """A homoglyph look-alike written as punycode (xn--…) or, one time in three, in Unicode."""
    name = name or rng.choice(PHISH_BRANDS)
    letters = [i for i, c in enumerate(name) if c in HOMOGLYPHS]
    if not letters:
        name, letters = name + "-app", [len(name) + 1]
    i = rng.choice(letters)
    spoof = name[:i] + HOMOGLYPHS[name[i]] + name[i + 1 :]
    label = spoof if rng.random() < 0.33 else spoof.encode("idna").decode()
    return f"{label}.com"


def lookalike_url(rng: random.Random) -> str:
    host = lookalike(rng)
    tail = rng.choice(
        ("", "/login", "/verify", "/account/update", "/signin?session=" + "".join(rng.choices(ALNUM, k=12)))
    )
    return rng.choice(("https://", "http://", "", "https://www.")) + host + tail


def obfuscated(rng: random.Random) -> str:
    """A domain written to slip past a URL parser: example[.]com, example dot com, hxxp://."""
    name, tld = domain(rng).rsplit(".", 1)
    return rng.choice((f"{name}[.]{tld}", f"{name} dot {tld}", f"hxxps://{name}.{tld}", f"{name}(.){tld}"))


def chat_link(rng: random.Random) -> str:
    return f"https://{rng.choice(CHAT_HOSTS)}/{''.join(rng.choices(ALNUM, k=rng.randint(6, 10)))}"


def person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST)} {rng.choice(LAST)}"


def email(rng: random.Random) -> str:
    first, last = rng.choice(FIRST).lower(), rng.choice(LAST).lower()
    local = rng.choice((f"{first}.{last}", f"{first[0]}{last}{rng.randint(1, 99)}", f"{first}_{last[:3]}",
                        f"{last}.{first}{rng.randint(70, 99)}"))  # fmt: skip
    return f"{local}@{rng.choice((*MAIL_HOSTS, 'hartley-consulting.com', 'novak-legal.de'))}"


def scam_email(rng: random.Random) -> str:
    return f"{rng.choice(LOOKALIKE_WORDS)}.{rng.choice(PHISH_BRANDS)}@{rng.choice(('gmail.com', 'outlook.com', 'mail.ru', 'proton.me'))}"


def phone(rng: random.Random) -> str:
    area, exchange, line = rng.randint(201, 989), rng.randint(201, 989), rng.randint(0, 9999)
    return rng.choice((f"({area}) {exchange}-{line:04d}", f"{area}-{exchange}-{line:04d}", f"{area}.{exchange}.{line:04d}",
                       f"+1 {area} {exchange} {line:04d}", f"+1-{area}-{exchange}-{line:04d}"))  # fmt: skip


def phone_intl(rng: random.Random) -> str:
    d = lambda k: "".join(rng.choices(string.digits, k=k))  # noqa: E731
    return rng.choice((f"+44 7{d(3)} {d(6)}", f"+49 151 {d(8)}", f"+33 6 {d(2)} {d(2)} {d(2)} {d(2)}",
                       f"+91 9{d(4)} {d(5)}", f"+61 4{d(2)} {d(3)} {d(3)}", f"07{d(3)} {d(6)}"))  # fmt: skip


def luhn_digit(digits: str) -> str:
    total = 0
    for i, c in enumerate(reversed(digits)):
        n = int(c) * (2 if i % 2 == 0 else 1)
        total += n - 9 if n > 9 else n
    return str((10 - total % 10) % 10)


def card(rng: random.Random) -> str:
    prefix, length = rng.choice((("4", 16), ("51", 16), ("55", 16), ("2221", 16), ("37", 15), ("34", 15), ("6011", 16)))
    body = prefix + "".join(rng.choices(string.digits, k=length - len(prefix) - 1))
    number = body + luhn_digit(body)
    sep = rng.choice((" ", "-", "", " "))
    groups = (4, 6, 5) if length == 15 else (4, 4, 4, 4)
    parts, at = [], 0
    for size in groups:
        parts.append(number[at : at + size])
        at += size
    return sep.join(parts)


IBAN_FORMATS = {"DE": (0, 18), "GB": (4, 14), "FR": (0, 23), "NL": (4, 10), "ES": (0, 20), "IT": (1, 22)}


def iban(rng: random.Random) -> str:
    """A valid IBAN: (letters, digits) of the country's BBAN, check digits from mod 97."""
    country = rng.choice(sorted(IBAN_FORMATS))
    letters, digits = IBAN_FORMATS[country]
    bban = token(rng, string.ascii_uppercase, letters) + token(rng, string.digits, digits)
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    value = f"{country}{98 - int(numeric) % 97:02d}{bban}"
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4)) if rng.random() < 0.5 else value


def iban_valid(value: str) -> bool:
    value = value.replace(" ", "")
    moved = value[4:] + value[:4]
    return int("".join(str(int(c, 36)) for c in moved)) % 97 == 1


def ssn(rng: random.Random) -> str:
    area = rng.choice([a for a in range(1, 900) if a != 666])
    number = f"{area:03d}-{rng.randint(1, 99):02d}-{rng.randint(1, 9999):04d}"
    return number if rng.random() < 0.8 else number.replace("-", rng.choice(("", " ")))


def token(rng: random.Random, alphabet: str, k: int) -> str:
    return "".join(rng.choices(alphabet, k=k))


def slack_hook(rng: random.Random) -> str:
    upper = string.ascii_uppercase + string.digits
    return f"https://hooks.slack.com/services/T{token(rng, upper, 8)}/B{token(rng, upper, 10)}/{token(rng, ALNUM, 24)}"


SECRET_MAKERS: dict[str, Callable[[random.Random], str]] = {
    "aws": lambda rng: "AKIA" + token(rng, string.ascii_uppercase + "234567", 16),
    "aws_secret": lambda rng: token(rng, ALNUM + "/+", 40),
    "ghp": lambda rng: rng.choice(("ghp_", "gho_", "ghs_")) + token(rng, ALNUM, 36),
    "sk": lambda rng: rng.choice(("sk-" + token(rng, ALNUM, 48), "sk-proj-" + token(rng, ALNUM + "-_", 64))),
    "slack": lambda rng: (
        f"{rng.choice(('xoxb', 'xoxp'))}-{token(rng, string.digits, 12)}-{token(rng, string.digits, 13)}-{token(rng, ALNUM, 24)}"
    ),
    "stripe": lambda rng: rng.choice(("sk_live_", "rk_live_")) + token(rng, ALNUM, 24),
    "google_key": lambda rng: "AIza" + token(rng, ALNUM + "-_", 35),
    "slack_hook": slack_hook,
}


def private_key(rng: random.Random) -> str:
    label = rng.choice(("RSA PRIVATE KEY", "OPENSSH PRIVATE KEY", "PRIVATE KEY", "EC PRIVATE KEY"))
    body = "\n".join(token(rng, ALNUM + "+/", 64) for _ in range(rng.randint(1, 3)))
    return f"-----BEGIN {label}-----\n{body}\n-----END {label}-----"


def password(rng: random.Random) -> str:
    return rng.choice(("Winter", "Summer", "Dragon", "Monkey", "Admin", "Welcome", "Sunshine")) + rng.choice(
        (str(rng.randint(1, 2030)), "!", "123", "@" + str(rng.randint(1, 99)))
    )


def code(rng: random.Random) -> str:
    head = rng.choice(("SAVE", "MATH", "STUDY", "WIN", "DEAL", "SMART", "FREE", "GET", "VIP"))
    return head + str(rng.choice((10, 15, 20, 25, 30, 50))) + token(rng, string.ascii_uppercase, rng.randint(0, 3))


SLOTS: dict[str, Callable[[random.Random], str]] = {
    "brand": brand,
    "brand_tag": lambda rng: brand(rng).replace(" ", "").replace("'", "").replace("-", ""),
    "product": lambda rng: rng.choice(PRODUCTS),
    "slogan": lambda rng: rng.choice(SLOGANS),
    "snack": lambda rng: rng.choice(SNACKS),
    "domain": domain,
    "path": path,
    "url": url,
    "short": short,
    "ip_url": ip_url,
    "lookalike": lookalike,
    "lookalike_url": lookalike_url,
    "puny": punycode,
    "obfuscated": obfuscated,
    "chat_link": chat_link,
    "refcode": lambda rng: token(rng, string.ascii_lowercase + string.digits, 6),
    "brand_p": lambda rng: rng.choice(PHISH_BRAND_NAMES),
    "scam_email": scam_email,
    "code": code,
    "pct": lambda rng: str(rng.choice((10, 15, 20, 25, 30, 40, 50, 70))),
    "price": lambda rng: f"{rng.choice((49, 99, 149, 250, 499, 750, 1200, 2500))}{rng.choice(('', '.00', '.99'))}",
    "small_price": lambda rng: f"{rng.randint(1, 4)}.{rng.choice(('99', '49', '95'))}",
    "num": lambda rng: str(rng.choice((50, 100, 500, 1000))),
    "days": lambda rng: str(rng.choice((7, 14, 30))),
    "hours": lambda rng: str(rng.choice((12, 24, 48))),
    "year": lambda rng: str(rng.randint(2019, 2026)),
    "vanity": lambda rng: f"{rng.randint(200, 999)}-{rng.randint(1000, 9999)}",
    "name_first": lambda rng: rng.choice(FIRST),
    "full_name": person,
    "email": email,
    "phone": phone,
    "phone_intl": phone_intl,
    "card": card,
    "exp": lambda rng: f"{rng.randint(1, 12):02d}/{rng.randint(26, 31)}",
    "cvv": lambda rng: f"{rng.randint(100, 999)}",
    "iban": iban,
    "bic": lambda rng: token(rng, string.ascii_uppercase, 6) + token(rng, string.ascii_uppercase + string.digits, 2),
    "ssn": ssn,
    "dob": lambda rng: f"{rng.randint(1, 12):02d}/{rng.randint(1, 28):02d}/{rng.randint(1950, 2004)}",
    "street": lambda rng: f"{rng.randint(2, 980)} {rng.choice(STREETS)}",
    "city": lambda rng: " ".join(rng.choice(CITIES)),
    "passport": lambda rng: token(rng, string.ascii_uppercase, 2) + token(rng, string.digits, 7),
    "privkey": private_key,
    "password": password,
    **SECRET_MAKERS,
}
