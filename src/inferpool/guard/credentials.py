"""Secret detection with Yelp's detect-secrets plugins, one set of instances per policy.

detect-secrets keeps its configuration in a process-wide settings object (`get_settings()`),
which would make two policies with different entropy limits overwrite each other. Its plugin
classes, though, take their limits in the constructor and `analyze_string` reads no settings.
So each policy builds its own plugin instances and calls `analyze_string` directly; the limit
check and detect-secrets' own false-positive heuristics (UUIDs, sequences, templates,
indirect references) are applied here. Nothing module-level is mutated.

Each plugin runs only on the lines where one of its cheap hints occurs (the pre-scan's job,
repeated per line), so a prompt without hints costs one substring search per hint.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from detect_secrets.filters.heuristic import (
    is_indirect_reference,
    is_likely_id_string,
    is_not_alphanumeric_string,
    is_potential_uuid,
    is_prefixed_with_dollar_sign,
    is_sequential_string,
    is_templated_secret,
)
from detect_secrets.plugins.artifactory import ArtifactoryDetector
from detect_secrets.plugins.aws import AWSKeyDetector
from detect_secrets.plugins.azure_storage_key import AzureStorageKeyDetector
from detect_secrets.plugins.base import BasePlugin
from detect_secrets.plugins.basic_auth import BasicAuthDetector
from detect_secrets.plugins.cloudant import CloudantDetector
from detect_secrets.plugins.discord import DiscordBotTokenDetector
from detect_secrets.plugins.github_token import GitHubTokenDetector
from detect_secrets.plugins.gitlab_token import GitLabTokenDetector
from detect_secrets.plugins.high_entropy_strings import (
    Base64HighEntropyString,
    HexHighEntropyString,
    HighEntropyStringsPlugin,
)
from detect_secrets.plugins.ibm_cloud_iam import IbmCloudIamDetector
from detect_secrets.plugins.ibm_cos_hmac import IbmCosHmacDetector
from detect_secrets.plugins.jwt import JwtTokenDetector
from detect_secrets.plugins.keyword import CONFIG_DENYLIST_REGEX_TO_GROUP, KeywordDetector
from detect_secrets.plugins.mailchimp import MailchimpDetector
from detect_secrets.plugins.npm import NpmDetector
from detect_secrets.plugins.openai import OpenAIDetector
from detect_secrets.plugins.private_key import PrivateKeyDetector
from detect_secrets.plugins.pypi_token import PypiTokenDetector
from detect_secrets.plugins.sendgrid import SendGridDetector
from detect_secrets.plugins.slack import SlackDetector
from detect_secrets.plugins.softlayer import SoftlayerDetector
from detect_secrets.plugins.square_oauth import SquareOAuthDetector
from detect_secrets.plugins.stripe import StripeDetector
from detect_secrets.plugins.twilio import TwilioKeyDetector

from inferpool.guard.disguise import decoded_findings, decoded_runs
from inferpool.guard.findings import Finding
from inferpool.guard.prescan import fold, long_tokens, occurrences

DEFAULT_BASE64_LIMIT = 4.5  # detect-secrets' defaults
DEFAULT_HEX_LIMIT = 3.0

# A password as a command line gives it: quoted or bare, at least 4 characters; a variable,
# template or placeholder (`-p$PW`, `-p"${PW}"`, `-p<password>`) is none.
_PASSWORD_VALUE = r"""(?![\"']?[$<{%(])(?:"(?P<double_quoted>[^"\n]{4,})"|'(?P<single_quoted>[^'\n]{4,})'|(?P<bare>[^\s'"]{4,}))"""
_SAME_COMMAND = r"\b[^\n|;&]*?\s"  # (the rest of the command, up to a flag)
# More tools' passwords on a command line (2026-12-07, the tools a held-out set of pasted command
# lines named), by a word of the pre-scan's pass (a secret hint): the tool's name, matched where
# it is, or for a flag (_FLAG_HINTS) the line holding it searched. Words as everyday in answers
# as "docker", "mongo" or "ldap" are no hints: each would have a streamed answer's every word
# re-screened while one is near (an answer about `docker build` 8.6 -> 10.0 µs an event with
# "docker" and "curl" as hints, written on one line 21 -> 76). Found as command_line_password.
_PASSWORD_FLAG_TOOLS = r"\b(?:wget|docker\s+login|mongo(?:sh)?|az\s+login)"
_LDAP = re.compile(r"\bldap(?:search|modify|add)" + _SAME_COMMAND + r"-w\s*" + _PASSWORD_VALUE)
TOOL_PASSWORDS: dict[str, re.Pattern[str]] = {
    # a user:password pair, a password flag
    "curl": re.compile(
        r"\bcurl" + _SAME_COMMAND + r"(?:-u|--user)[= ]?\s*['\"]?[^\s:'\"$<{]+:" + _PASSWORD_VALUE
    ),
    "--password": re.compile(
        _PASSWORD_FLAG_TOOLS + _SAME_COMMAND + r"--(?:http-)?password(?:=|\s+)" + _PASSWORD_VALUE
    ),
    "docker login": re.compile(r"\bdocker\s+login" + _SAME_COMMAND + r"-p\s+" + _PASSWORD_VALUE),
    # (mongosh's `-p` alone, or before another flag, asks for it: `-p --authenticationDatabase`)
    "mongosh": re.compile(r"\bmongosh" + _SAME_COMMAND + r"-p\s+(?!-)" + _PASSWORD_VALUE),
    "az login": re.compile(r"\baz\s+login" + _SAME_COMMAND + r"-p\s+" + _PASSWORD_VALUE),
    "sqlcmd": re.compile(r"\bsqlcmd" + _SAME_COMMAND + r"-P\s*" + _PASSWORD_VALUE),
    "ldapsearch": _LDAP,
    "ldapmodify": _LDAP,
    "ldapadd": _LDAP,
    "redis-cli": re.compile(r"\bredis-cli" + _SAME_COMMAND + r"-a\s+" + _PASSWORD_VALUE),
    # smbclient's user%password, htpasswd -b's third argument, rabbitmqctl's second
    "smbclient": re.compile(r"\bsmbclient" + _SAME_COMMAND + r"-U\s*['\"]?[^\s%'\"]+%" + _PASSWORD_VALUE),
    "htpasswd": re.compile(r"\bhtpasswd\s+-[a-zA-Z]*b[a-zA-Z]*\s+(?:-\S+\s+)*\S+\s+\S+\s+" + _PASSWORD_VALUE),
    "rabbitmqctl": re.compile(r"\brabbitmqctl\s+(?:add_user|change_password)\s+\S+\s+" + _PASSWORD_VALUE),
    # openssl's pass:, keytool's store and key passwords, net use's
    "pass:": re.compile(r"\s-pass(?:out|in)\s+pass:" + _PASSWORD_VALUE),
    "storepass": re.compile(r"\s-(?:src|dest)?storepass\s+" + _PASSWORD_VALUE),
    "keypass": re.compile(r"\s-(?:src|dest)?keypass\s+" + _PASSWORD_VALUE),
    "net use": re.compile(r"\bnet\s+use" + _SAME_COMMAND + r"/user:\S+\s+" + _PASSWORD_VALUE),
}

# Credentials carried in base64 (2026-12-07, a held-out set of them): HTTP Basic's
# `user:password` (an Authorization header as curl, nginx, code or a HAR file writes it), the
# same pair as docker's config.json and npm's .npmrc keep it, and SMTP's AUTH PLAIN
# (`\0user\0password`). By a hint of the pre-scan's pass, rare outside them (": basic", not
# "basic"); the value is decoded and its password judged as a command line's
# (`_is_secret_value`). Found as encoded_credentials. Each is within one line, as every rule
# of this check is (guard/stream.py relies on it): SMTP's AUTH LOGIN, whose password follows
# the server's prompt on a line of its own, is not read.
_BASE64_VALUE = r"(?P<value>[A-Za-z0-9+/]{6,}={0,2})(?![A-Za-z0-9+/=])"
_BASIC = re.compile(r"[Bb][Aa][Ss][Ii][Cc]\s+" + _BASE64_VALUE)
ENCODED_PAIRS: dict[str, re.Pattern[str]] = {
    ": basic": _BASIC,
    '"basic': _BASIC,
    "'basic": _BASIC,
    '"auth"': re.compile(r'"auth"\s*:\s*"' + _BASE64_VALUE),
    "_auth": re.compile(r"_auth\s*=\s*[\"']?" + _BASE64_VALUE),
    "auth plain": re.compile(r"(?i:auth\s+plain)\s+" + _BASE64_VALUE),
}
# Opaque tokens in HTTP headers (2026-12-07, a held-out set of them), as curl, wget, httpie,
# code, HTTP dumps, HAR files, nginx and kubectl write them: a bearer token (RFC 6750), the
# `token`, `Api-Key` and `Key` schemes, and the API-key headers of common services; by a hint of
# the pre-scan's pass (the scheme or the header's name). The value is a token of 16 characters
# or more (RFC 6750's b64token alphabet) with no mask, template or placeholder; a variable
# (`$TOKEN`, `${…}`, `{{token}}`, `f"Bearer {token}"`) is no token. Found as http_header_token.
_TOKEN_VALUE = r"(?P<value>[A-Za-z0-9._~+/-]{16,}=*)(?![A-Za-z0-9._~+/=$@{}<>-])"
_BEARER = re.compile(r"[Bb][Ee][Aa][Rr][Ee][Rr]\s+" + _TOKEN_VALUE)
_KEY_HEADER = r"(?i:x-api-key|api-key|x-auth-token|ocp-apim-subscription-key|private-token|x-vault-token|x-access-token)"
# `Name: value` (a header, an httpie item, a dict entry), or HAR's `"name": "Name", "value": "…"`
_KEY_HEADER_VALUE = re.compile(
    _KEY_HEADER + r"""["']?\s*(?:[:=]|,\s*["']value["']\s*:)\s*["']?""" + _TOKEN_VALUE
)
# A token-named variable, field or query parameter (`GITHUB_TOKEN=…`, `"access_token": "…"`,
# `?token=…`): detect-secrets' keyword list has no "token". The name ends in "token" (not
# "tokens", a count); a pagination or tokenizer token (`next_page_token`, `eos_token`) is none.
# (matched where the pre-scan found the hint, at "token"; the name is the word it ends)
_AFTER_TOKEN = re.compile(r"token(?![A-Za-z0-9])[\"']?[ \t]*[=:,]?[ \t]*[\"']?" + _TOKEN_VALUE, re.IGNORECASE)
# (a quote after the name only with what follows it: `os.environ['GITHUB_TOKEN']` reads one)
_TOKEN_HINTS = ("token=", "token =", "token:", "token :", 'token":', 'token",', "token':", "token',")
_NOT_CREDENTIAL_TOKEN = re.compile(
    r"page|next|continuation|cursor|sync|resume|pad|eos|bos|unk|sep|cls|mask|special|start|stop",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class _ValueRule:
    """A value after a hint of the pre-scan's pass: where it is (`pattern`'s `value` group, in the
    hint's line; `at_hint`: matched where the hint starts, else searched in the line), what it is
    found as, and whether a match is one."""

    pattern: re.Pattern[str]
    kind: str
    accept: Callable[[str, re.Match[str]], bool]
    at_hint: bool = False


def _token_accepted(text: str, m: re.Match[str]) -> bool:
    return _is_token_value(m["value"])


def _token_name_accepted(text: str, m: re.Match[str]) -> bool:
    return _is_token_value(m["value"]) and not _NOT_CREDENTIAL_TOKEN.search(_name_ending_at(text, m.start()))


def _password_accepted(text: str, m: re.Match[str]) -> bool:
    return _is_secret_value(m["value"], True)


def _rule(pattern: str | re.Pattern[str], kind: str) -> _ValueRule:
    compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
    return _ValueRule(compiled, kind, _token_accepted)


_KEY_HEADER_RULE = _rule(_KEY_HEADER_VALUE, "http_header_token")
# The words that name a secret in a configuration key, and the hints their ends give before a
# format's delimiter (`password>` of `<password>`, `secret"` of `key="ApiSecret"`, `pass'` of
# `['smtp_pass']`)
_CONFIG_SECRET_WORDS = ("password", "passwd", "passphrase", "pass", "secret", "pwd")


def _secret_word_hints(delimiter: str) -> tuple[str, ...]:
    return tuple(word + delimiter for word in _CONFIG_SECRET_WORDS)


# The rules below are matched where their hint is (the word that ends the key's name, the
# format's delimiter after it); what must stand before the word is checked by their acceptance.
_SECRET_WORD = rf"(?i:{'|'.join(_CONFIG_SECRET_WORDS)})"
# A configuration value a key named so holds that is no secret: a validation rule (Laravel's
# `'password' => 'required|min:8'`), a class (`App\Rules\Password`, `Foo::class`), a boolean, a
# number or size (`PasswordMinLength` 12, `password.hash.iterations` 310000, `30d`); and a
# secret holds a digit or a symbol (`'password' => 'hashed'`, a translation's `'password' =>
# 'Passwort'` hold neither).
_NOT_CONFIG_SECRET = re.compile(
    r"\||\\|::|^(?i:true|false|null|none|yes|no|on|off)$|^[0-9][0-9.,_]*[A-Za-z]{0,2}$"
)
_DIGIT_OR_SYMBOL = re.compile(r"[0-9!#$%&*+=?@^~]")


def _config_value_accepted(text: str, m: re.Match[str]) -> bool:
    value = m["value"]
    return (
        _DIGIT_OR_SYMBOL.search(value) is not None
        and _NOT_CONFIG_SECRET.search(value) is None
        and _is_secret_value(value, True)
    )


def _after(before: re.Pattern[str]) -> Callable[[str, re.Match[str]], bool]:
    """A configuration value's acceptance where `before` (ending in `$`) matches the text between
    its line's start and the match."""

    def accept(text: str, m: re.Match[str]) -> bool:
        if not _config_value_accepted(text, m):  # (first: most prose after "password " is words)
            return False
        line_start = text.rfind("\n", 0, m.start()) + 1
        return before.search(text, max(line_start - 1, 0), m.start()) is not None

    return accept


# `<password>…</password>`, `<PrivateKeyPassword>…</…>`, Jenkins' `<secret>…</secret>`: the
# element's name closes it again (`_element_accepted`)
_XML_SECRET_ELEMENT_VALUE = re.compile(
    rf"{_SECRET_WORD}>\s*(?P<value>[^<\s]{{4,}})\s*</(?P<closing>[\w.:-]+)>"
)


def _element_accepted(text: str, m: re.Match[str]) -> bool:
    opening = text.rfind("<", max(0, m.start() - 256), m.start())
    name = text[opening + 1 : text.find(">", m.start())]
    return opening >= 0 and name == m["closing"] and _config_value_accepted(text, m)


_XML_SECRET_ELEMENT = _ValueRule(_XML_SECRET_ELEMENT_VALUE, "config_secret", _element_accepted, at_hint=True)
# `<add key="ApiSecret" value="…"/>`, `<property name="…password">…</property>`,
# `<entry key="db.password">…</entry>`, `<setting name="SmtpPassword" …><value>…</value>`
_XML_NAMED_SECRET = _ValueRule(
    re.compile(
        rf"{_SECRET_WORD}\"(?:\s+value=\"|[^>\n]*>\s*(?:<value>\s*)?)(?P<value>[^\"<\s]{{4,}})(?=[\"<\s])"
    ),
    "config_secret",
    _after(re.compile(r"\b(?:name|key)=\"[\w.:-]*$")),
    at_hint=True,
)
# PHP arrays: `'password' => '…'`, `$config['smtp_pass'] = '…';`
_PHP_SECRET_ITEM = _ValueRule(
    re.compile(rf"{_SECRET_WORD}['\"]\s*(?:=>|\]\s*=)\s*['\"](?P<value>[^'\"\s]{{4,}})['\"]"),
    "config_secret",
    _after(re.compile(r"['\"][\w.:-]*$")),
    at_hint=True,
)
# A .netrc entry's password (curl -n, git, pip, Python's netrc): `machine HOST login USER
# password PASS` on one line, or `password PASS` on a line of its own
_NETRC_PASSWORD = _ValueRule(
    re.compile(r"(?i:password)[ \t]+(?P<value>\S{4,})(?=\s|$)"),
    "netrc_password",
    _after(re.compile(r"(?:^|\n)[ \t]*$|\blogin[ \t]+\S+[ \t]+$")),
    at_hint=True,
)
_TOKEN_NAME_RULE = _ValueRule(_AFTER_TOKEN, "token_assignment", _token_name_accepted, at_hint=True)
# A token as a URL's user name (2026-12-07, a held-out set of them): `git clone
# https://<token>@github.com/...` as GitHub's docs write it, Azure DevOps' and Bitbucket's clone
# URLs, private package indexes; with no password, an empty one or GitHub's dummy
# `x-oauth-basic`. A user name of 20 letters and digits or more, which letters and digits
# alternate in at least three times: a person's or a bot's name is words and a number
# (`jonathanrichardson1985`, `build-bot-2024`), a random token mixes them throughout. Not a Sentry
# DSN's public key (`https://<key>@o1.ingest.sentry.io/2`), which Sentry's docs put in browser
# code: no secret. Read at the `://` hint, after the URL password.
_URL_USER_TOKEN = _ValueRule(
    re.compile(
        r"://(?P<value>(?=(?:[A-Za-z0-9]*?(?:[A-Za-z][0-9]|[0-9][A-Za-z])){3})[A-Za-z0-9]{20,})"
        r"(?::(?:x-oauth-basic|x-oauth-token|x)?)?@(?=[A-Za-z0-9\[])(?!(?:[A-Za-z0-9-]+\.)*sentry\.io\b)"
    ),
    "url_user_token",
    _password_accepted,
    at_hint=True,
)
# The rules read where the pre-scan found each hint, in order (a value two rules read gets the
# first's kind)
VALUE_RULES: dict[str, tuple[_ValueRule, ...]] = {
    "bearer ": (_rule(_BEARER, "http_header_token"),),
    "authorization:": (
        _rule(
            r"(?i:authorization)[\"']?\s*:\s*[\"']?(?i:token|api-key|key)\s+" + _TOKEN_VALUE,
            "http_header_token",
        ),
    ),
    "api-key": (_KEY_HEADER_RULE,),
    "x-auth-token": (_KEY_HEADER_RULE,),
    "subscription-key": (_KEY_HEADER_RULE,),
    "private-token": (_KEY_HEADER_RULE,),
    "x-vault-token": (_KEY_HEADER_RULE,),
    "x-access-token": (_KEY_HEADER_RULE,),
    "--token": (_rule(r"--token[= ]" + _TOKEN_VALUE, "http_header_token"),),
    **dict.fromkeys(_TOKEN_HINTS, (_TOKEN_NAME_RULE,)),
    # Signed URLs and shared-access keys (2026-12-07, a held-out set of them): whoever holds the
    # URL or the connection string reads or writes what it names until it expires. Azure's SAS
    # `sig=` (URLs, `SharedAccessSignature=` strings, IoT Hub's `Authorization:` header), GCS V4
    # and S3 presigned signatures, CloudFront's `Signature=`; Service Bus, Event Hubs and IoT
    # Hub's `SharedAccessKey=`.
    "sig=": (_rule(r"[?&;\s]sig=(?P<value>[A-Za-z0-9%+/=_-]{16,})", "signed_url"),),
    "x-goog-signature=": (_rule(r"(?i:x-goog-signature)=(?P<value>[0-9a-fA-F]{64,})", "signed_url"),),
    "x-amz-signature=": (_rule(r"(?i:x-amz-signature)=(?P<value>[0-9a-fA-F]{64})", "signed_url"),),
    "signature=": (_rule(r"[?&]Signature=(?P<value>[A-Za-z0-9~_-]{40,})", "signed_url"),),
    "sharedaccesskey=": (
        _rule(r"(?i:SharedAccessKey)=(?P<value>[A-Za-z0-9+/]{40,}={0,2})", "shared_access_key"),
    ),
    # A URL's password (RFC 3986's userinfo: unreserved characters, sub-delims, percent-escapes),
    # which detect-secrets' basic-auth plugin reads only without a sub-delim or an escape
    # (`postgres://app:Xq7!9@db` is none to it) and only after a user name (`redis://:…@host`);
    # `#` too, which a connection string holds unescaped (a decoded escape gives one). Six
    # characters or more, not a port's digits (`//host:8080@`).
    "://": (
        _ValueRule(
            re.compile(r"://[^\s:/?#\[\]@'\"]*:(?P<value>(?!\d+@)[^\s/@'\"<>]{6,})@(?=[A-Za-z0-9\[])"),
            "url_password",
            _password_accepted,
            at_hint=True,
        ),
        _URL_USER_TOKEN,
    ),
    # Passwords in configuration formats detect-secrets' keyword plugin does not parse
    # (2026-12-07, a held-out set of them): Maven's settings.xml, Jenkins and .NET XML, WordPress's
    # wp-config.php, PHP config arrays, SQL's IDENTIFIED BY, PowerShell. A quoted or element value
    # of four characters or more without whitespace, not a template or placeholder.
    **dict.fromkeys(_secret_word_hints(">"), (_XML_SECRET_ELEMENT,)),
    # (a double-quoted PHP key, `"password" => "…"`, ends as an XML name does)
    **dict.fromkeys(_secret_word_hints('"'), (_XML_NAMED_SECRET, _PHP_SECRET_ITEM)),
    **dict.fromkeys(_secret_word_hints("'"), (_PHP_SECRET_ITEM,)),
    "define(": (
        _ValueRule(
            re.compile(
                r"\bdefine\(\s*['\"][A-Z0-9_]*(?:PASSWORD|PASS|SECRET|KEY|SALT|TOKEN)[A-Z0-9_]*['\"]\s*,\s*"
                r"['\"](?P<value>[^'\"\s]{4,})['\"]"
            ),
            "config_secret",
            _config_value_accepted,
        ),
    ),
    "identified by": (
        _ValueRule(
            re.compile(r"(?i:identified\s+by)\s+(?:(?i:password)\s+)?'(?P<value>[^'\s]{4,})'"),
            "sql_password",
            _password_accepted,
        ),
    ),
    "convertto-securestring": (
        _ValueRule(
            re.compile(r"(?i:ConvertTo-SecureString)\s+(?:-String\s+)?(['\"])(?P<value>[^'\"\s]{4,})\1"),
            "powershell_secret",
            _password_accepted,
        ),
    ),
    "password ": (_NETRC_PASSWORD,),
    # A password piped into a registry login (`echo '…' | docker login -u … --password-stdin`)
    "--password-stdin": (
        _ValueRule(
            re.compile(
                r"(?:\becho(?:\s+-[neE]+)?|\bprintf\s+(?P<format_quote>['\"])%s(?P=format_quote)|\bcat\s+<<<)\s+"
                r"(?P<quote>['\"]?)(?P<value>[^\s'\"|]{4,})(?P=quote)\s*\|\s*(?:sudo\s+)?[\w./-]*?"
                r"\b(?:docker|podman|nerdctl|helm|oras|skopeo|buildah|crane|regctl)\b[^|\n]*?--password-stdin"
            ),
            "command_line_password",
            _password_accepted,
        ),
    ),
    "-value": (
        _ValueRule(
            re.compile(
                r"-Name\s+['\"]?[\w-]*(?i:password|passwd|secret|pwd|token)[\w-]*['\"]?\s+-Value\s+"
                r"(['\"])(?P<value>[^'\"\s]{4,})\1"
            ),
            "powershell_secret",
            _password_accepted,
        ),
    ),
}
# Values documentation prints as an encoded pair's: RFC 7617's (and RFC 2617's) Basic example.
_EXAMPLE_PAIRS = frozenset({"Aladdin:open sesame"})
# At most this many encodings deep (a Kubernetes pull secret is base64 of JSON that holds
# docker's base64 `auth`)
_DECODED_DEPTH = 2

# Tokens of services detect-secrets has no plugin for, each written with a prefix of its own
# (2026-12-07, a held-out set of them in prose; in `KEY=value` lines its keyword plugin finds
# them already): kind -> (its prefixes, which are the pre-scan's hints; the token's pattern).
# LLM providers first, the keys a gateway's users paste most.
PREFIXED_TOKENS: dict[str, tuple[tuple[str, ...], str]] = {
    "openrouter_key": (("sk-or-v1-",), r"\bsk-or-v1-[0-9a-f]{64}\b"),
    "groq_key": (("gsk_",), r"\bgsk_[A-Za-z0-9]{52}\b"),
    "replicate_token": (("r8_",), r"\br8_[A-Za-z0-9]{37}\b"),
    "perplexity_key": (("pplx-",), r"\bpplx-[A-Za-z0-9]{48}\b"),
    "xai_key": (("xai-",), r"\bxai-[A-Za-z0-9]{80}\b"),
    "langsmith_key": (("lsv2_pt_", "lsv2_sk_"), r"\blsv2_(?:pt|sk)_[0-9a-f]{32}_[0-9a-f]{10}\b"),
    "vault_token": (("hvs.", "hvb."), r"\bhv[sb]\.[A-Za-z0-9_-]{90,}"),
    "digitalocean_token": (("dop_v1_", "doo_v1_", "dor_v1_"), r"\bdo[por]_v1_[0-9a-f]{64}\b"),
    "databricks_token": (("dapi",), r"\bdapi[0-9a-f]{32}(?:-\d)?\b"),
    "shopify_token": (("shpat_", "shpca_", "shppa_", "shpss_"), r"\bshp(?:at|ca|pa|ss)_[0-9a-fA-F]{32}\b"),
    "linear_key": (("lin_api_",), r"\blin_api_[A-Za-z0-9]{40}\b"),
    "postman_key": (("pmak-",), r"\bPMAK-[0-9a-f]{24}-[0-9a-f]{34}\b"),
    "doppler_token": (
        ("dp.pt.", "dp.st.", "dp.ct.", "dp.sa.", "dp.scim.", "dp.audit."),
        r"\bdp\.(?:pt|st|ct|sa|scim|audit)\.(?:[a-z0-9_-]{1,32}\.)?[A-Za-z0-9]{40,44}\b",
    ),
    "age_secret_key": (("age-secret-key-1",), r"\bAGE-SECRET-KEY-1[QPZRY9X8GF2TVDW0S3JN54KHCE6MUA7L]{58}\b"),
    "tailscale_key": (
        ("tskey-",),
        r"\btskey-(?:auth|api|client|scim|webhook)-[A-Za-z0-9]{6,}-[A-Za-z0-9]{16,}\b",
    ),
    "grafana_token": (("glsa_",), r"\bglsa_[A-Za-z0-9]{32}_[0-9a-fA-F]{8}\b"),
    "atlassian_token": (("atatt3",), r"\bATATT3[A-Za-z0-9_=-]{150,}"),
    "notion_token": (("ntn_",), r"\bntn_[0-9]{11}[A-Za-z0-9]{35}\b"),
    "figma_token": (("figd_",), r"\bfigd_[A-Za-z0-9_-]{40}(?![A-Za-z0-9_-])"),
    "newrelic_key": (("nrak-",), r"\bNRAK-[A-Z0-9]{27}\b"),
    "pulumi_token": (("pul-",), r"\bpul-[0-9a-f]{40}\b"),
    "google_oauth_secret": (("gocspx-",), r"\bGOCSPX-[A-Za-z0-9_-]{28}(?![A-Za-z0-9_-])"),
    "supabase_token": (("sbp_",), r"\bsbp_[0-9a-f]{40}\b"),
    "planetscale_token": (
        ("pscale_tkn_", "pscale_pw_", "pscale_oauth_"),
        r"\bpscale_(?:tkn|pw|oauth)_[A-Za-z0-9_.-]{32,64}",
    ),
    # (a second held-out set, the same day)
    "stripe_webhook_secret": (("whsec_",), r"\bwhsec_[A-Za-z0-9+/=]{32,}"),
    "slack_app_token": (("xapp-",), r"\bxapp-\d-[A-Z0-9]{9,}-\d{10,}-[0-9a-f]{32,}\b"),
    "mapbox_secret_token": (("sk.eyj",), r"\bsk\.eyJ[A-Za-z0-9_-]{20,}\.[A-Za-z0-9_-]{20,}"),
    "sentry_token": (("sntrys_", "sntryu_"), r"\bsntry(?:s_eyJ[A-Za-z0-9+/=_-]{80,}|u_[0-9a-f]{64}\b)"),
    "terraform_cloud_token": ((".atlasv1.",), r"\b[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,}"),
    "docker_hub_token": (("dckr_pat_",), r"\bdckr_pat_[A-Za-z0-9_-]{27,}"),
    "render_key": (("rnd_",), r"\brnd_[A-Za-z0-9]{32}\b"),
    "google_oauth_token": (("ya29.",), r"\bya29\.[A-Za-z0-9_-]{30,}"),
    "rubygems_key": (("rubygems_",), r"\brubygems_[0-9a-f]{48}\b"),
    "nuget_key": (("oy2",), r"\boy2[a-z0-9]{43}\b"),
    "square_token": (("sq0atp-",), r"\bsq0atp-[A-Za-z0-9_-]{22}\b"),
    "easypost_key": (("ezak",), r"\bEZAK[A-Za-z0-9]{54}\b"),
    "shippo_token": (("shippo_live_",), r"\bshippo_live_[0-9a-f]{40}\b"),
    "grafana_cloud_token": (("glc_",), r"\bglc_[A-Za-z0-9+/]{32,}={0,2}"),
    "heroku_key": (("hrku-",), r"\bHRKU-[A-Za-z0-9_-]{50,}"),
    "onepassword_token": (("ops_eyj",), r"\bops_eyJ[A-Za-z0-9+/=_-]{100,}"),
}

# Keys of providers detect-secrets has no plugin for (checked against its 1.5 plugin list).
EXTRA_PATTERNS: dict[str, re.Pattern[str]] = {
    **{kind: re.compile(pattern) for kind, (_hints, pattern) in PREFIXED_TOKENS.items()},
    "google_api_key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "openai_key": re.compile(r"\bsk-(?:proj|svcacct|admin)-[A-Za-z0-9_-]{20,}"),
    "anthropic_key": re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}"),
    "huggingface_token": re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"),
    "inferpool_key": re.compile(r"\bipk-[A-Za-z0-9_-]{40,}"),
    # Formats newer than detect-secrets' plugins for them: npm's granular access tokens (its
    # plugin reads `.npmrc`'s `_authToken=` lines only) and GitHub's fine-grained personal access
    # tokens (its plugin knows the ghp_/gho_/ghu_/ghs_/ghr_ prefixes)
    "npm_token": re.compile(r"\bnpm_[A-Za-z0-9]{36}\b"),
    "github_fine_grained_token": re.compile(r"\bgithub_pat_[A-Za-z0-9_]{70,}"),
    # Incoming-webhook URLs (whoever holds one posts into the channel), which detect-secrets has
    # no plugin for: Discord's and Microsoft Teams' (its Office 365 connector, old and new hosts)
    "discord_webhook": re.compile(
        r"https://(?:ptb\.|canary\.)?discord(?:app)?\.com/api/webhooks/\d{17,20}/[A-Za-z0-9_-]{60,}"
    ),
    "teams_webhook": re.compile(
        r"https://(?:[A-Za-z0-9-]+\.webhook\.office\.com/webhookb2|outlook\.office(?:365)?\.com/webhook)"
        r"/[0-9a-fA-F-]{8,}@[0-9a-fA-F-]{8,}/IncomingWebhook/[0-9a-fA-F]{32}/[0-9a-fA-F-]{8,}"
    ),
    # detect-secrets has a Telegram plugin, but its pattern is anchored to a whole line.
    "telegram_bot_token": re.compile(r"(?<!\d)\d{8,10}:AA[0-9A-Za-z_-]{33}\b"),
    # A password given on a command line, as pasted shell history shows it: the MySQL/MariaDB
    # clients' `-p<password>` (glued: `-p` alone, or followed by a space, asks for it; `-P` is the
    # port) and `sshpass -p <password>`. detect-secrets' keyword plugin needs `password=`-like
    # assignments and misses both.
    "command_line_password": re.compile(
        r"(?:\b(?:mysql(?:dump|admin|import|check|sh)?|mariadb(?:-dump|-admin|dump)?)\b[^\n|;&]*?\s-p"
        r"|\bsshpass\s+-p\s*)" + _PASSWORD_VALUE
    ),
}
EXTRA_HINTS = {
    "google_api_key": ("aiza",),
    "openai_key": ("sk-",),
    "anthropic_key": ("sk-ant-",),
    "huggingface_token": ("hf_",),
    "inferpool_key": ("ipk-",),
    "npm_token": ("npm_",),
    "github_fine_grained_token": ("github_pat_",),
    "telegram_bot_token": (":aa",),
    "discord_webhook": ("/api/webhooks/",),
    "teams_webhook": ("webhook.office.com", "office.com/webhook", "office365.com/webhook"),
    "command_line_password": ("mysql", "mariadb", "sshpass"),
    **{kind: hints for kind, (hints, _pattern) in PREFIXED_TOKENS.items()},
}
# The hints of TOOL_PASSWORDS that name a flag, not the tool (not where a match starts)
_FLAG_HINTS = frozenset({"--password", "pass:", "storepass", "keypass"})
# Every hint of EXTRA_HINTS and TOOL_PASSWORDS: a text with none of them (most) skips the
# per-pattern checks.
_EXTRA_PATTERN_HINTS = frozenset(h for hs in EXTRA_HINTS.values() for h in hs)
_TOOLS = frozenset(TOOL_PASSWORDS)
_ENCODED_PAIRS = frozenset(ENCODED_PAIRS)
_VALUE_RULES = frozenset(VALUE_RULES)
EXTRA_HINT_WORDS = _EXTRA_PATTERN_HINTS | _TOOLS | _ENCODED_PAIRS | _VALUE_RULES
_KEYWORD_HINTS = (
    "pass", "pwd", "secret", "api_key", "apikey", "api-key", "auth_key", "authkey", "priv_key",
    "private_key", "privkey", "client_key", "service_key", "account_key", "db_key", "database_key", "contrase",
)  # fmt: skip


# Plugins whose patterns' one group is the token's prefix (`(ghp|gho|...)_...`): detect-secrets
# reports what `findall` returns, that group, so their value is read as the whole match instead
# (else a redaction would replace "ghp" and leave the token; a `glcbt-` token without its
# optional group would be reported as nothing).
_PREFIX_GROUP_PLUGINS = (GitHubTokenDetector, GitLabTokenDetector)
# The JWT plugin's pattern ends in a lazy `[...]*?`, so its matches stop before the signature:
# the token is read on over the signature's characters. Artifactory's matches start and end with
# the whitespace, `=`, `:` or quote around the token, which are no part of it.
_JWT_SIGNATURE = re.compile(r"[A-Za-z0-9_\-.+/=]*")
_ARTIFACTORY_DELIMITERS = ' \t\r\n"=:'


@dataclass(frozen=True, eq=False)
class _Plugin:
    kind: str
    plugin: BasePlugin
    hints: tuple[str, ...]  # lower-case substrings; empty: lines with a long token
    # What every match of the plugin's patterns needs in the line (`lowered`: the line folded,
    # None when the fold is not exact): a line without it is not given to the plugin.
    gate: Callable[[str, str | None], bool] | None = None


# Every word of detect-secrets' keyword denylist (api_?key, db_?pass, password, pwd, secret,
# contraseña, ...) holds one of these; its config patterns then need, after the rest of the word,
# closing quotes or brackets, spaces and ':' or '=' or '!', or else a quoted value and ';', or a
# comparison ('==', '!=') before the word.
_KEYWORD_CORES = ("key", "pass", "pwd", "secret", "contrase")
_AFTER_KEYWORD = re.compile(r"\w*[\]'\"]{0,2}\s*[:=!]")


# The gate's character tests, one compiled search each (a generator of `in` tests costs ~1 us)
_ASSIGNMENT_CHARS = re.compile("[=:;]")
_COMPARISON = re.compile("==|!=|=!|!!")
_QUOTE = re.compile("['\"`]")


def _keyword_gate(line: str, lowered: str | None) -> bool:
    if _ASSIGNMENT_CHARS.search(line) is None:
        return False  # each of its config patterns needs an assignment, a colon or a semicolon
    if lowered is None or _COMPARISON.search(line) is not None:
        return True
    if ";" in line and _QUOTE.search(line) is not None:
        return True
    for core in _KEYWORD_CORES:
        at = lowered.find(core)
        while at >= 0:
            if _AFTER_KEYWORD.match(line, at):
                return True
            at = lowered.find(core, at + 1)
    return False


def _quoted_gate(line: str, _lowered: str | None) -> bool:
    return "'" in line or '"' in line  # the high-entropy plugins look at quoted strings only


def _discord_gate(line: str, _lowered: str | None) -> bool:
    return "." in line


def _twilio_gate(line: str, _lowered: str | None) -> bool:
    return "AC" in line or "SK" in line


def _kind(plugin: BasePlugin) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(plugin.secret_type).lower()).strip("_")


# Every prefix the GitLab plugin's patterns know (detect-secrets 1.5): personal, deploy, feed,
# service-account, runner, pipeline-trigger, CI-build, incoming-mail, agent and OAuth-app tokens,
# and the runner registration token's `GR1348941`
_GITLAB_PREFIXES = (
    "glpat-", "gldt-", "glft-", "glsoat-", "glrt-", "glptt-", "glcbt-", "glimt-", "glagent-", "gloas-", "gr1348941",
)  # fmt: skip


def _plugins(base64_limit: float, hex_limit: float) -> tuple[_Plugin, ...]:
    return (
        _Plugin("aws_access_key", AWSKeyDetector(), ("akia", "asia", "a3t", "abia", "acca", "aws")),
        _Plugin("artifactory", ArtifactoryDetector(), ("akc", "artifactory")),
        _Plugin("azure_storage_key", AzureStorageKeyDetector(), ("accountkey",)),
        _Plugin("basic_auth", BasicAuthDetector(), ("://",)),
        _Plugin("cloudant", CloudantDetector(), ("cloudant",)),
        _Plugin("discord_token", DiscordBotTokenDetector(), (), _discord_gate),
        _Plugin("github_token", GitHubTokenDetector(), ("ghp_", "gho_", "ghu_", "ghs_", "ghr_")),
        _Plugin("gitlab_token", GitLabTokenDetector(), _GITLAB_PREFIXES),
        _Plugin("ibm_cloud_iam", IbmCloudIamDetector(), ("ibm",)),
        _Plugin("ibm_cos_hmac", IbmCosHmacDetector(), ("ibm", "cos_hmac")),
        _Plugin("jwt", JwtTokenDetector(), ("eyj",)),
        _Plugin("mailchimp_key", MailchimpDetector(), ("-us",)),
        _Plugin("npm_token", NpmDetector(), ("npm_", "_authtoken")),
        _Plugin("openai_key", OpenAIDetector(), ("t3blbkfj",)),
        _Plugin("private_key", PrivateKeyDetector(), ("private key", "putty-user-key")),
        _Plugin("pypi_token", PypiTokenDetector(), ("pypi-",)),
        _Plugin("sendgrid_key", SendGridDetector(), ("sg.",)),
        _Plugin("slack_token", SlackDetector(), ("xox", "hooks.slack.com")),
        _Plugin("softlayer", SoftlayerDetector(), ("softlayer",)),
        _Plugin("square_oauth", SquareOAuthDetector(), ("sq0csp-",)),
        _Plugin("stripe_key", StripeDetector(), ("sk_live_", "rk_live_")),
        _Plugin("twilio_key", TwilioKeyDetector(), (), _twilio_gate),
        _Plugin("secret_keyword", KeywordDetector(), _KEYWORD_HINTS, _keyword_gate),
        _Plugin("high_entropy_base64", Base64HighEntropyString(limit=base64_limit), (), _quoted_gate),
        _Plugin("high_entropy_hex", HexHighEntropyString(limit=hex_limit), (), _quoted_gate),
    )


SECRET_HINTS: tuple[str, ...] = tuple(
    sorted({h for p in _plugins(DEFAULT_BASE64_LIMIT, DEFAULT_HEX_LIMIT) for h in p.hints} | EXTRA_HINT_WORDS)
)


class SecretScanner:
    """detect-secrets' plugins with one policy's entropy limits (its own instances, no shared settings)."""

    hints = SECRET_HINTS

    def __init__(
        self, base64_limit: float = DEFAULT_BASE64_LIMIT, hex_limit: float = DEFAULT_HEX_LIMIT
    ) -> None:
        for name, value in (("base64EntropyLimit", base64_limit), ("hexEntropyLimit", hex_limit)):
            if not 0.0 <= value <= 8.0:
                raise ValueError(f"{name} must be between 0.0 and 8.0 bits per character, got {value}")
        self.base64_limit = base64_limit
        self.hex_limit = hex_limit
        self.plugins = _plugins(base64_limit, hex_limit)
        self._rank = {p: i for i, p in enumerate(self.plugins)}  # plugins run in this order
        self._by_hint: dict[str, list[_Plugin]] = {}
        for plugin in self.plugins:
            for hint in plugin.hints:
                self._by_hint.setdefault(hint, []).append(plugin)
        self._unhinted = [p for p in self.plugins if not p.hints]  # run where a long token is

    def find(
        self,
        text: str,
        lowered: str | None = None,
        hints: Mapping[str, Sequence[int]] | None = None,
        tokens: Iterable[tuple[int, int]] | None = None,
        decoded: Sequence[tuple[int, int, str]] | None = None,
        depth: int = _DECODED_DEPTH,
    ) -> list[Finding]:
        """`lowered`, `hints`, `tokens`, `decoded`: the pre-scan's fold of the text, where it
        found each hint, the long tokens and the runs that decode to text (found here when not
        given). A decoded run is read too, `depth` encodings deep (`disguise.decoded_findings`)."""
        exact = True
        if lowered is None:
            lowered, exact = fold(text)
        elif len(lowered) != len(text):
            exact = False
        if hints is None:
            hints = {h: list(occurrences(lowered, h)) for h in self.hints if h in lowered}
        tokens = tuple(long_tokens(text) if tokens is None else tokens)
        found: list[Finding] = []
        # Most texts hold no hint of a rule of this module's own: one set operation skips them all
        rules = EXTRA_HINT_WORDS.intersection(hints)
        if rules and not _EXTRA_PATTERN_HINTS.isdisjoint(rules):
            for kind, pattern in EXTRA_PATTERNS.items():
                if any(h in hints for h in EXTRA_HINTS[kind]):
                    found += _extra_findings(kind, pattern, text)
        for hint in rules:
            if hint in TOOL_PASSWORDS:
                found += _tool_passwords(text, hint, hints[hint])
            elif hint in ENCODED_PAIRS:
                found += [
                    Finding("secrets", "encoded_credentials", *m.span("value"))
                    for m in _line_matches(text, ENCODED_PAIRS[hint], hints[hint])
                    if _encoded_password(m["value"], hint)
                ]
        lines: dict[int, set[_Plugin]] = {}  # line start -> plugins to run on it
        for hint, offsets in hints.items():
            for plugin in self._by_hint.get(hint, ()):
                for at in offsets:
                    lines.setdefault(text.rfind("\n", 0, at) + 1, set()).add(plugin)
        for start, _end in tokens:
            lines.setdefault(text.rfind("\n", 0, start) + 1, set()).update(self._unhinted)
        # A line's findings depend on the line and its plugins alone (each plugin, gate and
        # filter reads the line, its fold is the fold of the line), so a line the text repeats
        # (a chat history, a log) is checked once per call.
        done: dict[str, tuple[set[_Plugin], list[tuple[str, int, int]]]] = {}
        for start, plugins in lines.items():
            end = text.find("\n", start)
            end = len(text) if end < 0 else end
            line = text[start:end]
            known = done.get(line)
            if known is not None and known[0] == plugins:
                in_line = known[1]
            else:
                in_line = self._line_findings(line, plugins, lowered[start:end] if exact else None)
                done[line] = (plugins, in_line)
            for kind, a, b in in_line:
                a, b = (
                    (start + a, start + b)
                    if kind != "private_key"
                    else _key_block(text, start + a, start + b)
                )
                found.append(Finding("secrets", kind, a, b))
        if rules and not _VALUE_RULES.isdisjoint(rules):
            # (in the pre-scan's order, so that a value two rules read gets the first's kind; a
            # token a plugin knows by its format, a JWT, a GitHub token, is found as that)
            found += _rule_values(text, hints, found)
        if depth > 0 and tokens:
            # a Kubernetes Secret's or a kubeconfig's data, a key pasted encoded
            runs = decoded_runs(text, tokens) if decoded is None else decoded
            if runs:
                found += decoded_findings(text, runs, found, lambda inner: self.find(inner, depth=depth - 1))
        return found

    def _line_findings(
        self, line: str, plugins: set[_Plugin], lowered: str | None
    ) -> list[tuple[str, int, int]]:
        """What `plugins` find in one line (`lowered`: its fold, None when not exact), as
        (kind, start, end) in the line."""
        out: list[tuple[str, int, int]] = []
        for p in sorted(plugins, key=self._rank.__getitem__):
            if p.gate is not None and not p.gate(line, lowered):
                continue
            searched_from: dict[str, int] = {}  # (a value reported twice: its second occurrence)
            for value in self._values(p, line):
                at = line.find(value, searched_from.get(value, 0))
                if at >= 0:
                    end = at + len(value)
                    if isinstance(p.plugin, JwtTokenDetector):  # (its pattern's lazy end: below)
                        end = _JWT_SIGNATURE.match(line, end).end()  # type: ignore[union-attr]
                    searched_from[value] = end
                    out.append((p.kind, at, end))
        return out

    def _values(self, p: _Plugin, line: str) -> Iterable[str]:
        if isinstance(p.plugin, KeywordDetector):
            values: Iterable[str] = p.plugin.analyze_string(line, CONFIG_DENYLIST_REGEX_TO_GROUP)
        elif isinstance(p.plugin, _PREFIX_GROUP_PLUGINS):
            values = (m[0] for pattern in p.plugin.denylist for m in pattern.finditer(line))
        elif isinstance(p.plugin, ArtifactoryDetector):  # (its matches hold the delimiters around)
            values = (v.strip(_ARTIFACTORY_DELIMITERS) for v in p.plugin.analyze_string(line))
        else:
            values = p.plugin.analyze_string(line)
        for value in values:
            if not value or value in _DOCUMENTED_KEYS or value.partition("=")[2] in _DOCUMENTED_KEYS:
                continue  # (the Azure plugin reports `AccountKey=<key>`)
            if isinstance(p.plugin, HighEntropyStringsPlugin):
                if p.plugin.calculate_shannon_entropy(value) <= p.plugin.entropy_limit:
                    continue
            if isinstance(p.plugin, (HighEntropyStringsPlugin, KeywordDetector)) and _looks_harmless(
                value, line, p.plugin
            ):
                continue
            if isinstance(p.plugin, BasicAuthDetector) and _is_example_value(value):
                continue  # postgresql://postgres:password@localhost/db, as the docs write it
            yield value


# How far a private key's block may reach (an 8192-bit RSA key in PEM is ≈6.5 KB, PGP blocks more)
_KEY_BLOCK_CHARS = 65_536
# A cut-off paste's key body: the lines after the BEGIN line that are base64 (16 characters or
# more: a word is no key line) or a PEM header (`Proc-Type: 4,ENCRYPTED`), newlines written or
# escaped (`\n` in JSON), one blank line allowed before each
_NEWLINE = r"(?:\r?\n|\\r?\\n)"
_KEY_BODY = re.compile(
    rf"(?:-----)?(?:{_NEWLINE}(?:[ \t]*{_NEWLINE})?[ \t]*"
    rf"(?:[A-Za-z0-9+/=]{{16,}}|[A-Z][A-Za-z0-9-]*: [^\r\n\\]*)(?={_NEWLINE}|$))*"
)
_LINE_REST = re.compile(r"[^\r\n\\]*")  # (to a newline, written or escaped)


def _key_block(text: str, start: int, end: int) -> tuple[int, int]:
    """The span of the private key whose first line's label (`BEGIN RSA PRIVATE KEY`, PuTTY's
    `PuTTY-User-Key-File-2`) is `text[start:end]`, which is all detect-secrets' plugin finds: the
    key is the block it opens, through its END line (PuTTY: its Private-MAC line), or for a
    paste cut off before one, through the base64 and header lines that follow."""
    label = text[start:end]
    if label.startswith("BEGIN "):
        start -= 5 if text.startswith("-----", start - 5) else 0
        closing = f"-----END {label[6:]}-----"
    else:
        closing = "Private-MAC:"
    at = text.find(closing, end, end + _KEY_BLOCK_CHARS)
    if at < 0:
        return start, _KEY_BODY.match(text, end).end()  # type: ignore[union-attr]  # (matches empty)
    if closing != "Private-MAC:":
        return start, at + len(closing)
    return start, _LINE_REST.match(text, at).end()  # type: ignore[union-attr]  # (matches empty)


def _extra_findings(
    kind: str,
    pattern: re.Pattern[str],
    text: str,
    start: int = 0,
    end: int | None = None,
    no_examples: bool = False,
) -> list[Finding]:
    """The matches of one of EXTRA_PATTERNS or TOOL_PASSWORDS in `text[start:end]`: the whole
    match, or where a pattern has named groups, the one that matched (the secret without what
    announced it); a mask (`****`, `xxxx`) or a template is no secret, and with `no_examples`
    neither is a documented example value (`curl -u admin:admin`)."""
    found = []
    for m in pattern.finditer(text, start, len(text) if end is None else end):
        start, end = m.span(m.lastgroup) if m.lastgroup else m.span()
        if _is_secret_value(text[start:end], no_examples):
            found.append(Finding("secrets", kind, start, end))
    return found


def _is_secret_value(value: str, no_examples: bool) -> bool:
    """Not a mask (`****`, `xxxx`) nor a template, nor with `no_examples` a documented example."""
    return not (
        set(value) <= _MASK_CHARACTERS
        or is_templated_secret(value)
        or _TEMPLATE.fullmatch(value) is not None
        or is_prefixed_with_dollar_sign(value)  # (a shell variable or command: `$PW`, `$(pass …)`)
        or (no_examples and _is_example_value(value))
    )


# Templates detect-secrets' filter does not know: `%VAR%` (Windows, .NET config transforms),
# `$(VAR)` (MSBuild, Azure Pipelines, make), `#{var}` (Octopus Deploy, Ruby)
_TEMPLATE = re.compile(r"%[\w.-]+%|\$\([\w.-]+\)|#\{[\w.-]+\}")


def _tool_passwords(text: str, tool: str, offsets: Iterable[int]) -> list[Finding]:
    """TOOL_PASSWORDS[tool]'s findings: matched where the tool's name is (`offsets`), or for
    a flag's name (_FLAG_HINTS) searched in the lines holding it."""
    pattern = TOOL_PASSWORDS[tool]
    found: list[Finding] = []
    for at in sorted(offsets):
        end = text.find("\n", at)
        end = len(text) if end < 0 else end
        if tool in _FLAG_HINTS:
            start = text.rfind("\n", 0, at) + 1
            if found and found[-1].start >= start:
                continue  # (the line was searched)
            found += _extra_findings("command_line_password", pattern, text, start, end, True)
            continue
        m = pattern.match(text, at, end)
        if m is not None and m.lastgroup is not None:  # (the value's group: one always matches)
            start, stop = m.span(m.lastgroup)
            if _is_secret_value(text[start:stop], True):
                found.append(Finding("secrets", "command_line_password", start, stop))
    return found


def _line_matches(text: str, pattern: re.Pattern[str], offsets: Iterable[int]) -> list[re.Match[str]]:
    """`pattern`'s matches in the lines holding a hint (at `offsets`), each line searched once."""
    matches: list[re.Match[str]] = []
    searched = -1
    for at in sorted(offsets):
        start = text.rfind("\n", 0, at) + 1
        if start <= searched:
            continue  # (the line was searched)
        end = text.find("\n", at)
        matches += pattern.finditer(text, start, len(text) if end < 0 else end)
        searched = start
    return matches


def _rule_values(text: str, hints: Mapping[str, Sequence[int]], known: Sequence[Finding]) -> list[Finding]:
    """VALUE_RULES' findings for the hints found among `hints` (each value once, as the first
    rule in the pre-scan's order finds it), but where one of `known` (the other rules') is."""
    found: list[Finding] = []
    spans: set[tuple[int, int]] = set()
    for hint, offsets in hints.items():
        for rule in VALUE_RULES.get(hint, ()):
            if rule.at_hint:  # (within its line, as every rule here: guard/stream.py)
                matches = []
                for at in offsets:
                    end = text.find("\n", at)
                    if m := rule.pattern.match(text, at, len(text) if end < 0 else end):
                        matches.append(m)
            else:
                matches = _line_matches(text, rule.pattern, offsets)
            for m in matches:
                span = m.span("value")
                if span in spans or any(f.start < span[1] and span[0] < f.end for f in known):
                    continue
                if rule.accept(text, m):
                    spans.add(span)
                    found.append(Finding("secrets", rule.kind, *span))
    return found


def _name_ending_at(text: str, at: int) -> str:
    """The name (letters, digits, `_.-`) that `text[at:]`'s "token" ends: "GITHUB_TOKEN"."""
    start = at
    while start > 0 and (text[start - 1].isalnum() or text[start - 1] in "_.-"):
        start -= 1
    return text[start : at + 5]


def _is_token_value(value: str) -> bool:
    """Whether a header's value is a token: no mask, template, placeholder or documented example,
    of eight different characters or more (a token is random; "aaaa-bbbb-…" is not) and holding
    a digit (a name in code is none: `"X-API-Key": API_KEY_FROM_ENV`, `process.env.apiKey`; 16
    random characters of its alphabet lack one about once in 14: (56/66)**16 ≈ 0.07)."""
    return len(set(value)) >= 8 and _DIGIT.search(value) is not None and _is_secret_value(value, True)


_DIGIT = re.compile(r"\d")


def _encoded_password(value: str, hint: str) -> bool:
    """Whether an encoded value of ENCODED_PAIRS[hint] holds a password that is a secret: a
    `user:password` pair (AUTH PLAIN: `authzid\0user\0password`) whose password is no mask,
    template or documented example."""
    try:
        compact = value.rstrip("=")
        decoded = base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True).decode("utf-8")
    except ValueError:  # (binascii.Error and UnicodeDecodeError are ValueErrors)
        return False
    if hint == "auth plain":
        parts = decoded.split("\0")
        if len(parts) != 3 or not parts[1]:
            return False
        password = parts[2]
    else:
        user, colon, password = decoded.partition(":")
        if not colon or not user or decoded in _EXAMPLE_PAIRS:
            return False
    return len(password) >= 4 and password.isprintable() and _is_secret_value(password, True)


# Keys their vendors publish for local emulators: no secret (added after the Azurite key was
# seen in a held-out set's benign text: docs/security.md)
_DOCUMENTED_KEYS = frozenset(
    {"Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="}
)

_MASK_CHARACTERS = frozenset("*xX.")


# What people write where a key goes, in docs, READMEs and questions: "sk-...", "sk-xxxxxxxx",
# "your-api-key-here", "<token>", "REPLACE_ME". detect-secrets leaves these to a repository's
# baseline (its allowlist), which a gateway screening prompts has none of.
_PLACEHOLDER = re.compile(
    r"your[-_ ]?\w*?(?:key|token|secret|password|pass)\b|[-_]here$|^<.*>$|(?:replace|change)[-_]?me|"
    r"placeholder|^(?:[a-z0-9]{1,8}[-_.]){0,3}[*x.]+$",  # (a prefix of up to three parts: tskey-auth-XXXX)
    re.IGNORECASE,
)
# Values that official docs print where a password goes, and that a model's answer copies from
# them: Docker Hub's postgres image ("mysecretpassword", "example"), mysql's ("my-secret-pw"),
# redis.conf's "foobared", RabbitMQ's "guest", Java's truststore "changeit", the default
# accounts' own names, and the words themselves. `docker run -e POSTGRES_PASSWORD=example` in a streamed answer is no leak.
_EXAMPLE_VALUES = frozenset(
    {"password", "passwd", "pass", "secret", "example", "changeme", "mysecretpassword", "my-secret-pw",
     "foobared", "guest", "postgres", "admin", "root", "test", "changeit",
     "x-oauth-basic", "x-oauth-token",  # (GitHub's dummy password beside a token user name)
     "anonymous", "anonymous@"}  # (anonymous FTP's password by convention)
)  # fmt: skip


def _first_word(value: str) -> str:
    """The value's first word, without quotes (an unquoted config value runs to the line's end)."""
    words = value.split(None, 1)
    return words[0].strip("'\"") if words else ""


def _is_example_value(value: str) -> bool:
    """A placeholder or a documented example value (_PLACEHOLDER, _EXAMPLE_VALUES): no secret."""
    word = _first_word(value)
    return word.lower() in _EXAMPLE_VALUES or _PLACEHOLDER.search(word) is not None


# A Subresource Integrity digest (W3C SRI: package-lock.json's "integrity", HTML's `integrity=`):
# a hash of public content, no secret, however high its entropy.
_INTEGRITY_DIGEST = re.compile(r"sha(?:256|384|512)-[A-Za-z0-9+/]+={0,2}")


# A hex digest (MD5, SHA-1, SHA-2 lengths) that its line calls one: a git commit in a GitHub API
# answer (`"sha": "…"`), an ETag, a checksum. The hex detector flags every quoted one.
_DIGEST_LENGTHS = frozenset({32, 40, 56, 64, 96, 128})
_DIGEST_LABEL = re.compile(
    r"(?<![A-Za-z])(?i:sha\d*|md5|hash|digest|checksum|etag|if-none-match|if-match|commit|revision|rev|fingerprint)"
    r"\W{0,6}$"
)


def _is_labelled_digest(value: str, line: str, plugin: BasePlugin) -> bool:
    if not isinstance(plugin, HexHighEntropyString) or len(value) not in _DIGEST_LENGTHS:
        return False
    at = line.find(value)
    return at > 0 and _DIGEST_LABEL.search(line, max(0, at - 24), at) is not None


def _own_parameter(value: str, line: str) -> str:
    """The part of `line` that a value's own name is in: from the last `&`, `;`, `,` or space
    before it. detect-secrets takes a value for an id wherever an id's name comes before it in
    the line, and a form body or query string names an id beside its secret
    (`client_id=…&client_secret=…`)."""
    at = line.find(value)
    if at < 0:
        return line
    name_start = max(line.rfind(separator, 0, at) for separator in "&;, ") + 1
    # (the separator may stand between the name and the value: `user_id = 8f…`)
    name = line[name_start:at].strip(" =:\"'")
    return line if not name else line[name_start:]


def _looks_harmless(value: str, line: str, plugin: BasePlugin) -> bool:
    """detect-secrets' default heuristic filters, for the plugins that guess rather than match a
    format, placeholders and documented example values (`_is_example_value`), integrity digests,
    and hex digests their line calls so."""
    return (
        _is_example_value(value)
        or _INTEGRITY_DIGEST.fullmatch(value) is not None
        or _is_labelled_digest(value, line, plugin)
        or is_sequential_string(value)
        or is_potential_uuid(value)
        or (
            is_likely_id_string(value, line, plugin)
            and is_likely_id_string(value, _own_parameter(value, line), plugin)
        )
        or is_templated_secret(value)
        or is_prefixed_with_dollar_sign(value)
        or is_indirect_reference(line)
        or is_not_alphanumeric_string(value)
    )
