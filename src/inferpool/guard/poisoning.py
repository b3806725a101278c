"""What a poisoned tool asks of the model: a scored reading of tool definitions.

A tool's description reaches the model as part of its prompt (the chat template renders it), so
an MCP server or a plugin can write orders there: read the user's keys and pass them in a
parameter, copy every e-mail to an outside address, call another tool with its own arguments,
and say nothing of it. Such a description rarely overrides anything in so many words (the
injection check's phrasings); it reads as usage notes. Its signals, each a family with a weight:

- a secret or the user's data as the thing to take (keys under ~/.ssh, .env files, cloud
  credentials, the conversation so far, the system prompt), weighed with an order to hand it
  over (into a parameter, to an address or a URL) in the same sentence, and little alone (a key
  manager's description names ~/.ssh too);
- a name that asks for a local secret's contents (a parameter `content_from_reading_ssh_id_rsa`);
- keeping the user from knowing, or telling them something else ("do not mention this step",
  "without telling the user", "describe it only as routine maintenance");
- claiming precedence over the user's or developer's instructions;
- changing how other tools behave ("whenever send_email is used, also BCC ...");
- a call to another tool or a command that destroys, pays or grants access;
- sending to an outside address, acting past what the user asked, destroying: each weighs
  little alone (a tool may rightly do any of them) and tips the score with another signal;
- an image or link whose address carries data out.

An act that its sentence forbids first ("never push to the remote unless asked") or makes wait
for the user's consent ("only grant write access when the user explicitly asks") is a
safeguard, not an order. Families combine as a noisy-OR within one definition (a paragraph of
the request's definitions, screened together); the injection check's `toolThreshold` (by
default its threshold) decides. It reads words, not intent: a description that asks for what it
should not in words none of these patterns know passes (docs/security.md gives its measured
error rates).
"""

from __future__ import annotations

import functools
import re
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from typing import cast

import hyperscan

from inferpool.guard.findings import Finding
from inferpool.guard.policy import DEFINITIONS_APART
from inferpool.guard.prescan import compiled_database

_FLAGS = re.IGNORECASE | re.UNICODE


@dataclass(frozen=True)
class _Family:
    """A family of signals: its weight, its patterns (alternatives), and them as one expression."""

    name: str
    weight: float
    alternatives: tuple[str, ...]
    pattern: re.Pattern[str] = field(init=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(
            self, "pattern", re.compile("|".join(f"(?:{a})" for a in self.alternatives), _FLAGS)
        )


def _within(limit: int) -> str:
    """Up to `limit` characters of one line (a gap between two words of a pattern; one
    character class, which the regular expression engine reads fast)."""
    return f"[^\\n]{{0,{limit}}}?"


# The user's secrets and data, as something to take: local files that hold keys, the
# environment, the conversation, the system prompt, personal data
_LOCAL_SECRET = _Family(
    "local_secret",
    0.0,
    (
        r"~/\.ssh|\bid_(?:rsa|ed25519|ecdsa|dsa)\b|\bauthorized_keys\b|\.ssh/|\.pem\b",
        r"(?:^|[^\w.])\.env\b|\.aws/credentials|\.aws/config|\.netrc|\.npmrc|\.pypirc|\.git-credentials|"
        r"\.docker/config|\.kube/config|application_default_credentials|\bgcloud\b[^\n]{0,30}?credentials",
        r"\bmcp\.json\b|claude_desktop_config|/etc/(?:passwd|shadow)|\bkeychain\b|\bwallet\.dat\b|\bcookie store\b|"
        r"/Cookies\b|\bbrowser cookies\b|\bsaved (?:passwords|credentials|logins)\b",
        r"\benvironment variables?\b|\benv vars?\b|\brun `?env`?\b|\bprintenv\b|\bos\.environ\b|\bprocess\.env\b|"
        r"\b[A-Z][A-Z0-9]*_(?:TOKEN|API_KEY|SECRET(?:_ACCESS_KEY)?|PASSWORD)\b",
        r"\b(?:conversation|chat|message|email) (?:history|log|transcript)s?\b|\btranscript\b|"
        r"\b(?:entire|whole|full) (?:conversation|chat|thread|history)\b|\b(?:chat|conversation) so far\b",
        r"\b(?:last|previous|recent|latest|most recent) (?:\d+ |few |five |ten |twenty |fifty )?(?:messages|turns|emails|"
        r"prompts|direct messages)\b|\bdirect messages\b|\b(?:session )?cookies\b",
        r"~/\.(?:bashrc|zshrc|profile|bash_profile|bash_history|zsh_history|config/)|\bhosts\.yml\b|\.git/config\b|"
        r"(?:^|[\s/~\"'`(])\.(?:ssh|aws|gnupg|kube)\b|\bgit remote -v\b|\bembedded (?:access )?tokens?\b|"
        r"\bthe user'?s (?:git )?e-?mail\b|\boutput of `?env`?\b",
        r"\b(?:appeared|shared|mentioned|mentions?|pasted)\b[^\n]{0,30}?\b(?:in|during|anywhere in) (?:the|this) "
        r"(?:conversation|chat|"
        r"session)\b|\bmentioned earlier in the (?:chat|conversation)\b|\bthe user has (?:shared|pasted|mentioned)\b|"
        r"\b(?:documents|attachments|files) (?:or attachments )?the user (?:provided|shared|uploaded|attached)\b|"
        r"\bthe user'?s full (?:request|message|prompt)\b|\byour full (?:reply|response|answer)\b|"
        r"\bthe user'?s (?:last|latest|previous|most recent) (?:messages?|prompts?|requests?)\b|\b(?:browser|chrome|safari|"
        r"firefox) history\b|~/Library/(?:Application Support|Keychains|Cookies)|\btotp seeds?\b|\bseed phrases?\b|"
        r"\brecovery (?:codes|phrase)\b|\bmnemonic\b|\bpassphrases?\b",
        r"\bcvv\b|\bcvc\b|\bsecurity code\b|\bfull card numbers?\b|número (?:completo )?de (?:la )?tarjeta|código CVV|"
        r"\bfiles (?:they|the user) (?:shared|uploaded|attached)\b|\b(?:summary|copy) of the user'?s (?:request|messages?|"
        r"conversation)\b|\b(?:each|every|all) (?:of the user'?s )?private repositor(?:y|ies)\b",
        r"\b(?:rules|guidance|instructions|directions) (?:it|you) (?:was |were )?(?:given|received)\b|"
        r"\b(?:list of |the )?tools available to you\b",
        r"\bsystem (?:prompt|message|instructions)\b|\byour (?:hidden |initial )?instructions\b",
        r"\buser'?s (?:emails?|contacts|files|documents|address book|messages|full name|name|home address|"
        r"address|ip(?: address)?|location|phone number|date of birth)\b|\bprecise location\b|\bdate of birth\b|"
        r"\bhome address\b|\bone-time codes?\b|\bcard numbers?\b|\bsocial security\b",
        r"Gesprächsverlauf|Verlauf|Zugangsdaten|historique|identifiants|historial|credenciais|история|переписк|"
        r"历史|对话记录|聊天记录|凭证|凭据|密钥|履歴|会話|認証情報|秘密鍵",
    ),
)
# Credentials in general: weighed less with a hand-over (a tool may rightly take an API key)
_CREDENTIAL = _Family(
    "credential",
    0.0,
    (
        r"\bprivate keys?\b|\bsecret keys?\b|\bapi[ _-]?keys?\b|\baccess tokens?\b|\bsession tokens?\b|"
        r"\bpasswords?\b|\bcredentials?\b|\btokens?\b|\bsecrets?\b",
        r"Passworter?|Passwörter?|mots? de passe|contraseñas?|senhas?|пароли?|ключи|密码|パスワード",
        r"\b(?:account|routing|card|iban|passport|social security|national id|national insurance|tax id) numbers?\b|"
        r"\bbank(?:ing)? (?:details|account details)\b|\bsalary\b|\bdiagnos[ie]s\b|\blocal ?storage\b|\bsessionStorage\b|"
        r"\bdates? of birth\b|\bbirthdays?\b|\bcontact list\b|\baddress book\b|\bpayment methods?\b",
        r"codice fiscale|data di nascita|\bPESEL\b|numer dowodu|dane karty|\bCPF\b|Steuer-?ID|Kontodaten|"
        r"numéro de sécurité sociale",
    ),
)
_SENDS = (
    r"\b(?:send|sent|post|posted|forward|forwarded|upload|uploaded|transmit|transmitted|report|share|shared|"
    r"exfiltrate|mail|email|submit|push|sync|synced|mirrored)\b"
)
# An order to hand something over: into a parameter, to an address, a URL or a sending tool
_HAND_OVER = _Family(
    "hand_over",
    0.0,
    (
        rf"\b(?:pass|put|include|insert|place|embed|attach|append|add|copy|paste|set|fill|store|save|write|provide|"
        rf"supply|give|populate)\b{_within(200)}\b(?:as|in|into|to|inside|under|via)\b{_within(40)}(?:\bparam(?:eter)?s?\b|"
        r"\bargument\b|\bfield\b|`[\w.-]+`|'\w+'|\b\w+_\w+\b|\bdescription\b|\bheading\b|`[^`\n]{1,60}`)",
        rf"\bcall\b{_within(30)}\bwith\b{_within(150)}\b(?:in|as|into) (?:the )?(?:`[\w.-]+`|\b\w+_\w+\b)",
        rf"(?:`[\w.-]+`|\b\w+_\w+\b|\bfield\b|\bparam(?:eter)?\b|\bargument\b|\bpayload\b){_within(40)}\b(?:must|should|"
        r"needs? to|has to|will) (?:contain|include|hold|carry|be (?:set|filled|populated) (?:to|with))\b",
        r"(?:`[\w.-]+`|\b\w+_\w+\b) (?:argument|parameter|field) (?:contains|includes|holds)\b|"
        r"(?:`[\w.-]+`|\b\w+_\w+\b) set to\b",
        r"\b(?:copy|put|paste|include|insert|write|place)\b (?:in|into) (?:it|them|this (?:field|parameter|argument))\b",
        rf"\b(?:pass|put|paste|copy|include|send|forward|attach)\b{_within(60)}\bas `?[a-z_]+\b",
        rf"{_SENDS}{_within(120)}(?:https?://|\bwebhook\b|\bendpoint\b|\bto user\b|\bchannel\b|\+\d)",
        rf"{_SENDS}{_within(120)}[\w.+-]+@[\w-]+\.[\w.]+",  # (an address: apart, or the gate is too large)
        r"\bhttp_(?:post|request|get|put)\b|\bpost_message\b|\bsend_(?:email|sms|message|mail)\b|\burlopen\b|"
        r"\bcurl\b[^\n]{0,60}?https?://",
        rf"\b(?:set|fill)\b{_within(40)}\b(?:to|with) the (?:value|contents?|output|base64|text|body|hash) of\b",
        rf"\b(?:expects?|requires?|needs?|wants?)\b{_within(60)}\b(?:in|as|into)\b{_within(30)}(?:`\w+`|\b\w+_\w+\b|"
        r"\bfield\b|\bparam(?:eter)?\b|\bargument\b)",
        r"\b(?:in full|verbatim|whole files?|entire files?|full contents?|complete contents?|complete records?)\b",
        rf"{_SENDS}{_within(120)}(?:#[\w-]+|\bto user [A-Z0-9]+\b)",
        rf"\b(?:pull request|commit|push|upload|publish)\b{_within(60)}\bpublic (?:repo|repository|bucket|gist|channel)\b",
        r"(?:in den|im|ins) (?:Parameter|Feld)|(?:dans (?:le|la)|au) (?:paramètre|champ)|en el (?:parámetro|campo)|"
        r"(?:no|nel) (?:parâmetro|parametro|campo)|в (?:параметр|поле)|参数中|参数里|到参数|放入|パラメータに|フィールドに|"
        r"\bincludere\b|\bincluya\b|\binclua\b|\bincluez\b|\bnella richiesta\b",
    ),
)
# A word that forbids what follows it in its sentence ("never pass credentials as arguments")
_FORBIDDING_WORDS = r"never|(?<!or )not|don't|doesn't|can't|cannot|won't|no need to"  # ("do not": its "not")
_FORBIDDEN = re.compile(rf"\b(?:{_FORBIDDING_WORDS})\b", _FLAGS)
# A hand-over is forbidden by such a word just before it (a few words between: "do not ever
# pass", "never returned in full"), not by one earlier in its sentence about something else
# ("so users don't have to sign in again, read the cookie store and include it in `bundle`")
_FORBIDS_NEXT = re.compile(rf"\b(?:{_FORBIDDING_WORDS})\b(?:\W+\w+){{0,3}}\W*$", _FLAGS)
_FORBIDS_NEXT_CHARS = 60
_FAMILIES = (
    _Family(
        "tool_conceals",
        0.55,
        (
            rf"\b(?:do not|don't|never|must not|should not|no need to|without)\s+(?:ever\s+)?(?:mention|tell|inform|"
            rf"notify|reveal|disclose|alert|bring up|report|list|surface|point(?:ing)? out|show|say|explain)\b"
            rf"{_within(40)}\b(?:this step|this|that|it|these|any of (?:this|it)|what you|the (?:extra|additional|"
            r"second|changed|backup|hidden|new|package|mirror|copy|forwarding|upload)\b)",
            rf"\bwithout (?:telling|informing|notifying|alerting|mentioning it to|letting)\b{_within(30)}\b(?:user|them)\b",
            r"\bthe user (?:does not|doesn't|must not|need not|should not|won't|will not|never) "
            r"(?:need to )?(?:know|see|be told|notice|find out)\b|\bno need to (?:tell|inform|mention|notify|alert)\b",
            rf"\b(?:should|must|need|is) not (?:be )?(?:surfaced|reported|shown|mentioned|disclosed|visible|revealed)\b"
            rf"{_within(20)}\b(?:user|reply|answer|response)\b",
            rf"\bkeep (?:this|it|that)\b{_within(20)}\b(?:hidden|secret|quiet|private|between us|confidential)\b",
            r"\b(?:silently|covertly|secretly|invisibly|quietly)\b|\bwithout pointing it out\b|\bin the background, so\b",
            r"\bmention only\b|\bonly mention\b|\bthe user only sees\b|\bthen continue (?:normally|as usual|as normal)\b|"
            r"\bas an implementation detail\b|\bimplementation detail rather than\b",
            rf"\b(?:leave|keep)\b{_within(80)}\bout of (?:all )?(?:your|the) (?:summary|summaries|reply|replies|answers?|"
            r"responses?|explanation|report|confirmation)\b",
            rf"\breassure (?:them|the user|the customer)\b|\bdescribe\b{_within(40)}\bonly as\b|"
            r"\bnot (?:displayed|shown|rendered|visible) (?:in|to) the (?:client )?(?:ui|interface)\b|"
            r"\bnote (?:to|for) the (?:ai|assistant|model|llm)\b",
            rf"\b(?:archive|delete|hide|skip|mark(?:ed)? as read|move)\w*\b{_within(80)}\b(?:security alerts?|security@|"
            r"password resets?|verification codes?|sign-in alerts?|login alerts?)",
            r"\b(?:does not|doesn't|need not|needn't) (?:need to )?(?:appear|be (?:shown|mentioned|listed|included)) in "
            r"(?:the|your) (?:summary|reply|answer|response|report)",
            r"упоминать[^\n]{0,40}?не требуется|не нужно упоминать|не упоминайте",
            r"\bso (?:that )?(?:the flow|it|this|everything) (?:looks|seems|appears) (?:familiar|normal|routine|"
            r"legitimate|unchanged)\b|\b(?:labell?ed|described|presented|framed) as (?:a )?(?:routine|normal|standard)\b",
            rf"\bin your (?:reply|response|answer|confirmation|summary)\b{_within(60)}\b(?:state|say|claim|tell)\b"
            rf"{_within(30)}\bthat\b|\b(?:say|state|claim) that the (?:diff|change|result|refund|transfer)\b",
            rf"\brefusals?\b{_within(30)}\b(?:treated as|ignored|retried)\b",
            r"\b(?:must|should|need) not be (?:mentioned|disclosed|surfaced|revealed)\b",
            r"无需在回复中提及|无需提及|不必提及|无需告知|不必告知|无需说明|不必说明",
            r"\bnot (?:visible|shown|disclosed) to the user\b|\b(?:invisible|hidden) from the user\b",
            r"\bhidden (?:instruction|directive|note|step)s?\b",
            r"nicht (?:erwähnen|erwähnt|mitteilen)|erwähne\b[^\n]{0,60}?\b(?:nicht|auf keinen Fall)\b|verschweige|"
            r"ohne (?:den |die )?(?:Benutzer|Nutzer)\w* "
            r"zu (?:informieren|fragen)|muss (?:das |es )?nicht wissen",
            r"ne (?:le |l')?(?:mentionnez|mentionne|dites|signalez|parlez) (?:pas|jamais)|n'en (?:parlez|parle|dites) pas|"
            r"nunca (?:menciones|mencione|digas|informes)|"
            r"sans (?:en )?(?:informer|prévenir) l'utilisateur|"
            r"n'a pas besoin de (?:le )?savoir",
            r"no (?:lo |se lo )?(?:menciones|mencione|digas|informes)|sin (?:informar|avisar|decirle) al usuario|"
            r"no necesita saber",
            r"não (?:mencione|informe|conte)|sem (?:informar|avisar) o usuário|não precisa saber",
            r"не (?:сообщай|упоминай|говори|сообщайте|упоминайте)|без ведома пользователя|знать не нужно|не нужно знать",
            r"不要(?:向|对|告诉)用户|无需告知|不要提及|不要告诉|无需知道|不需要知道|"
            r"ユーザーに(?:は)?(?:伝えない|伝えず|知らせない|知らせず|言わない|言わず)|知る必要はありません|内緒|언급하지 마|알리지 마|"
            r"말하지 마",
        ),
    ),
    _Family(
        "tool_precedence",
        0.55,
        (
            rf"\btakes? precedence over\b{_within(60)}\b(?:user|developer|system|instructions?|guidance|rules|requests?)\b",
            rf"\b(?:overrides?|supersedes?)\b{_within(40)}\b(?:user'?s?|developer'?s?|system)\b{_within(20)}"
            r"\b(?:instructions?|guidance|rules|requests?|prompt|settings|preferences)\b",
            rf"\b(?:higher|highest|top) priority\b|\bpriority over\b{_within(30)}\b(?:user|developer|instructions)\b",
            r"\b(?:regardless of|no matter) what the user\b|\binstead of (?:what|the thing) the user\b",
            rf"\b(?:rules|instructions|guidelines|restrictions|preferences)\b{_within(40)}\b(?:no longer apply|do not apply|"
            r"are suspended|are lifted|cease to apply|are void|are outdated|are disabled)\b",
            rf"\b(?:safety|content|usage) (?:guidelines|rules|policies|filters|checks)\b{_within(30)}"
            r"\b(?:disabled|off|suspended|lifted|do not apply|no longer apply)\b|\bnever refuse\b",
            r"\b(?:mode|safety\w*|guardrails?|filters?)\s*[=:]\s*(?:off|false|disabled|unrestricted|none)\b",
            r"\b(?:you are|the assistant is|assistants are|the model is)(?: hereby)? (?:authori[sz]ed|permitted|allowed|cleared) "
            r"to (?:share|send|disclose|ignore|bypass|read|access|skip|execute|run|override)\b",
            rf"\b(?:guidelines|rules|instructions|policies|restrictions)\b{_within(30)}\b(?:are|is) (?:superseded|overridden|"
            r"suspended|waived)\b",
            r"<\s*/?\s*system\s*>|\[/?system\]|<\|im_start\|>\s*system|visibility=\W?model-only|\bmodel-only\b",
            r"\b(?:assistants?|models?|you) must not (?:refuse|question|decline|push back)\b",
            r"vorrangig vor|hat Vorrang",
            rf"\b(?:rank|ranks|take|takes) (?:above|over)\b{_within(40)}\b(?:user|participant|person chatting|requests?)\b|"
            r"\boutranks?\b|\bstill steer (?:them|the user)\b",
            r"Vorrang vor|prévaut sur|prioridad sobre|prevalece sobre|deixam de valer|приоритет над|优先于|"
            r"より(?:も)?.{0,12}優先|gaan boven",
        ),
    ),
    _Family(
        "tool_shadows",
        0.5,
        (
            rf"\b(?:when|whenever|if|each time|every time)\b{_within(20)}(?:`[\w.-]+`|\b\w+_\w+\b|\b\w+\b) tool\b"
            rf"{_within(20)}\b(?:is|are|gets?)\s+(?:available|present|installed|used|called|invoked|enabled|connected)\b",
            rf"\b(?:when|whenever) (?:calling|using|you (?:call|use|run)) `?\w+_\w+`?{_within(60)}\b(?:always|also|instead|add|"
            r"set|bcc|cc|include|first|replace|change|use)\b",
            rf"\b(?:when|whenever|each time|every time)\b{_within(40)}(?:`[\w.-]+`|\b\w+_\w+\b|\banother tool\b|"
            rf"\bother tools?\b|\bany tool\b){_within(40)}\b(?:is|are|gets) (?:used|called|invoked|run)\b{_within(60)}"
            r"\b(?:always|also|instead|additionally|add|set|bcc|cc|rewrite|prepend|append|skip|route)\b",
            rf"\b(?:when|whenever)\b{_within(30)}(?:`[\w.-]+`|\b\w+_\w+\b|\banother\b|\bother\b|\bany\b)"
            rf"{_within(30)}\btools?\b{_within(10)}\b(?:returns?|responds?)\b",
            rf"(?:`[\w.-]+`|\b\w+_\w+\b) tool\b{_within(40)}\b(?:is|are) (?:deprecated|obsolete|broken|disabled)\b",
            r"\bcross-tool note\b|\binstructions for the [\w-]+ (?:and [\w-]+ )?tools?\b",
            rf"\b(?:when|whenever|each time|every time|any ?time)\b (?:you )?(?:call|use|run|invoke)\w*\b{_within(40)}"
            rf"(?:`[\w.-]+`|\b\w+_\w+\b){_within(60)}\b(?:always|also|instead|additionally)\b",
            rf"\binstead of the (?:user|customer|vendor|recipient|payee|employee|supplier)'?s?\b{_within(20)}\b(?:iban|account|"
            r"address|card|wallet|payment method|recipient|listed|own|intended|chosen|original)\b|"
            r"\brather than (?:to )?the (?:user|customer|employee|vendor|recipient|payee|supplier)\b",
            rf"\b(?:all|every|any)\b{_within(20)}\b(?:emails?|messages?|payments?|payouts?|transfers?|commits?|pushes?|"
            rf"invoices?)\b{_within(60)}\b(?:must|should|shall|need to)\b{_within(40)}\b(?:be )?(?:sent|bcc'?d?|cc'?d?|"
            r"routed|copied|redirected|pushed|forwarded|settled|go)\b",
            rf"\b(?:bcc|cc)\b{_within(60)}\b(?:every|all|each|always)\b|\b(?:always|also)\s+(?:bcc|cc)\b|\bblind copy\b",
            rf"\b(?:include|add|put)\b{_within(40)}(?:\baddress\b|@[\w-]+\.[a-z]{{2,}}){_within(20)}\b(?:bcc|cc)\b",
            r"substitu\w+ a conta|ersetze\w* (?:die|das) (?:Konto|IBAN)|remplace[rz]? le compte|reemplace la cuenta|"
            r"\breplace the (?:account|iban|recipient|wallet|payee)\b",
            r"\bother tools? in this (?:workspace|environment|server|session)\b|\bnote for other tools\b",
            r"\b(?:tool|function) `?[\w.-]+`? (?:is deprecated|is obsolete|has a (?:known )?bug|is broken|returns stale)\b",
            r"`?\b\w+_\w+\b`? tool (?:is deprecated|is obsolete|has a (?:known )?bug|is broken|returns stale)\b",
            r"\binstead of the user'?s (?:own|intended|chosen)\b|\brather than the user'?s\b|\breplace the \w+'?s? "
            r"(?:iban|account|address|recipient|wallet)\b",
            r"(?:chaque fois|lorsque|quand) (?:que )?l'outil|(?:lorsque|quand) cet outil|cada vez que (?:la herramienta|se use)|"
            r"toda vez que a ferramenta|"
            r"(?:jedes Mal|immer),? wenn (?:das )?(?:Tool|Werkzeug)|каждый раз,? когда|每当.{0,10}工具|"
            r"ツールが.{0,10}(?:使われる|呼ばれる)",
            r"copie cachée|copia oculta|cópia oculta|Blindkopie|скрыт\w* копи|密送",
            r"(?:strumento|herramienta|outil|ferramenta|Werkzeug|Tool|инструмент) `?\w+_\w+`? (?:è obsoleto|está obsoleto|"
            r"est obsolète|ist veraltet|устарел)",
        ),
    ),
    _Family(
        "tool_hijacks",
        0.5,
        (
            r"\brm\s+-\w*r\w*f|\bchmod\s+(?:-R\s+)?(?:777|a\+rwx)|\bmkfs\b|\bdd if=",
            rf"\b(?:add|append|write|insert)s?\b{_within(60)}\bauthorized_keys\b|\bauthorized_keys\b[^\n]{{0,40}}?ssh-(?:rsa|ed25519)",
            r"\b(?:curl|wget)\b[^\n]{0,120}?\|\s*(?:sudo\s+)?(?:ba|z)?sh\b",
            r"\b(?:transfer_funds|send_money|make_payment|wire_transfer|send_transaction|purchase\w*|buy_\w+|"
            r"place_order)\b|\b(?:full|entire|whole) balance\b",
            r"\bdelete_(?:repository|repo|database|bucket|user|project|account|branch|file|dir\w*|folder)s?\b|"
            r"\bdrop (?:table|database)\b",
            r"\bcluster-admin\b|\bClusterRoleBinding\b|\bdomain admins\b|\badd_(?:collaborator|user_to_group|admin|member)\b",
            rf"\b(?:grant|give)\b{_within(40)}\b(?:write|admin|owner|full|root) access\b",
            r"\b(?:do not|don't|never|without)\s+(?:ask(?:ing)?|wait(?:ing)?|request(?:ing)?)\s+(?:the user\s+)?"
            r"(?:for\s+)?(?:confirmation|approval|permission)\b|\bwithout (?:confirmation|confirming)\b|"
            r"zonder (?:om )?bevestiging|sans (?:demander )?confirmation|sin (?:pedir )?confirmación|"
            r"sem (?:pedir )?confirmação|ohne (?:Rück|Be)stätigung|без подтверждения|无需确认|不经确认|確認せず",
            r"\bgit remote add\b|\bgit push\b[^\n]{0,40}?--(?:all|mirror)\b|\bpush to the remote\b",
            r"\bterraform destroy\b|-auto-approve\b|\bdrop (?:schema|table|database)\b|\bgit push (?:-f|--force)\b|"
            r"\bpush origin --delete\b|\btruncate table\b|\bkubectl delete (?:namespace|ns|deployment|pvc|pv|node)s?\b|"
            r"\baws s3 rm\b[^\n]{0,40}?--recursive|\bterminate (?:every|all|each)\b|\bdelete-objects\b",
            rf"\b(?:delete|remove|destroy|drop|transfer|pay|purchase|wipe|erase)\w*\b{_within(200)}\bno (?:user )?"
            r"confirmation (?:is )?(?:required|needed)\b|\b(?:skip|bypass)\w*\b[^\n]{0,30}?\bconfirmation\b",
            r"\bgrant (?:all|select|insert|update|delete)\b[^\n]{0,60}?\bto\b|\bAdministratorAccess\b|\bpublic-read\b|"
            r"--extra-index-url\b|--index-url\b|--trusted-host\b|\bhostNetwork\b",
            r"\binstall\w*\b[^\n]{0,60}?\bfrom https?://|\bupdate_payment_method\b|"
            r"\b(?:set|change|update|replace|swap)\b[^\n]{0,30}?\bcard on file\b",
            rf"\broute (?:all|every|each|any)\b{_within(20)}\b(?:refunds?|payments?|payouts?|transfers?|funds|orders)\b",
            r"\bufw disable\b|\bsetenforce 0\b|\bsystemctl (?:stop|disable) [\w-]*(?:sensor|falcon|defender|auditd|firewalld|"
            r"apparmor|edr)\b|\bSet-MpPreference\b|\bleave (?:them|it) disabled\b",
            rf"\b(?:remove|delete|wipe|clear|truncate|shred)\w*\b{_within(40)}(?:~/\.(?:bash|zsh)_history|/var/log/audit|"
            r"\baudit logs?\b|\.git/logs)",
            r"\bwithout (?:checking|confirming|consulting) with\b|\bautomatically,? without asking\b|"
            r"\b(?:turn off|disable|bypass|remove)\b[^\n]{0,20}?\bbranch protection\b|"
            r"\bcounts as (?:an )?approval\b|\brather than waiting for (?:approvals?|reviews?)\b|\bskip_security_scan\b",
            r"\b(?:set|change|replace) the (?:payee|beneficiary|payout account|deposit account|destination account)\b|"
            r"\bsend\b[^\n]{0,40}?\b\d+(?:\.\d+)? ?% of\b|\bto (?:wallet|address) 0x[0-9a-f]",
            r"사용자 확인이 필요하지|ohne Rückfrage|sin confirmación|sans confirmation|確認は不要|確認不要",
        ),
    ),
    _Family(
        "tool_sends_out",
        0.35,  # (a tool may rightly send to a fixed address: with another signal, it tips the score)
        (
            rf"\b(?:send|sends|sent|post|posts|posted|upload|uploads|uploaded|forward|forwards|forwarded|copy|copied|"
            rf"mirror|mirrored|sync|synced|relay|relays|export|exported|transmit|stream|share|shared|ingest|replicate|"
            rf"report)\b{_within(150)}(?:https?://|\b[\w.+-]+@[\w-]+\.[a-z]{{2,}}\b|\b(?:[a-z0-9-]+\.)+"
            r"(?:io|com|net|co|dev|app|link|org|ai|cloud)\b)",
            rf"\badd\b{_within(30)}https?://\S+{_within(30)}\b(?:sink|destination|endpoint|webhook|target|mirror|remote)\b",
            rf"\b(?:send|sends|sent|post|posted|upload|uploaded|forward|forwarded|copied|mirrored|synced|shared|transmitted|"
            rf"exported|records?|stored)\b{_within(60)}\b(?:third[- ]part(?:y|ies)|partner(?:'s)? (?:server|endpoint|api|crm|"
            r"service|workspace)|our (?:partner|storage|servers?|endpoint|backend|collector))\b",
            r"(?:enregistr\w*|transmis|envoy\w*)[^\n]{0,60}?(?:serveur partenaire|prestataire|tiers)|"
            r"(?:servizio|servicio|serviço) extern[oa] (?:conserva|guarda|armazena)|service externe (?:conserve|garde)",
            r"(?:发送|上传|同步|提交|POST)\s*(?:到|至)\s*https?://|(?:envoy\w*|enviad\w*|enviar|copiad\w*|copiée?s?|"
            r"gesendet|hochgeladen|wyślij|отправ\w*|\bleite\b|weiterleiten)[^\n]{0,80}?(?:https?://|@[\w-]+\.[a-z]{2,})",
            r"@[\w-]+\.[a-z]{2,}[^\n]{0,30}?(?:共有|送信|転送)",
            rf"\b(?:write|copy|post|put|send|upload|share)\w*\b{_within(60)}\b(?:shared|public)\b{_within(30)}\b(?:note|doc|"
            r"document|folder|channel|workspace|bucket|repo\w*|gist|drive)\b",
        ),
    ),
    _Family(
        "tool_overreach",
        0.4,  # acting past what the user asked, or against what they chose
        (
            rf"\beven (?:when|if|though) (?:the user|they|the customer)\b{_within(40)}\b(?:only|marks?|asks?|says?|"
            r"chooses?|declines?|refuses?|targets?|describes?|does not|doesn't)\b",
            rf"\b(?:regardless of|no matter)\b{_within(30)}\b(?:the user|user'?s|they|the customer)\b|"
            r"\bwhether or not\b[^\n]{0,30}?\b(?:needed|required|asked|relevant|the user|they)\b",
            r"\bincluding (?:those|ones|the ones|notes|items|files|entries) (?:the user|they) (?:marks?|marked|describes?|"
            r"flagged)\b|\beven (?:when|if) (?:marked|flagged) (?:as )?(?:private|confidential|internal)\b|"
            r"\bincluding (?:those |ones |notes |items |files |entries |messages )?(?:marked|flagged|labell?ed) (?:as )?"
            r"(?:private|confidential|internal|encrypted)\b",
            r"y compris (?:les|celles)[^\n]{0,20}?marqu|incluso (?:las|los)[^\n]{0,20}?marcad|inklusive[^\n]{0,20}?markiert",
            r"\b(?:in|across) (?:every|each|all) (?:bucket|repositor(?:y|ies)|account|namespace|project|workspace)s?\b",
            rf"\b(?:after|before) (?:every|each|any)\b{_within(30)}\balso (?:call|run|send|create|post|upload)\b|"
            r"\bafter using any tool\b|\b(?:with|from) this tool or any other\b|"
            r"\b(?:every|each|any) (?:shell )?(?:command|tool call|request|message|file|document|page) the (?:assistant|model|"
            r"agent) (?:runs|makes|sends|reads|opens|visits)\b",
            r"niezależnie od tego|indipendentemente d|independentemente d|unabhängig davon|quel(?:le)?s? que soi|"
            r"即使用户|无论用户|ユーザーが.{0,10}(?:場合でも|としても)",
        ),
    ),
    _Family(
        "tool_destroys",
        0.2,  # (a tool may rightly destroy what it is for: with another signal, it tips the score)
        (
            r"\bpermanently (?:delete|remove|erase|purge)\w*\b|\bempty (?:the )?(?:trash|recovery bin|recycle bin|bin)\b|"
            r"\b(?:delete|remove|erase|purge|wipe)\w* (?:all|every|everything|each)\b|\bdisable (?:versioning|backups?|"
            r"logging|audit\w*|mfa|2fa)\b",
        ),
    ),
    _Family(
        "tool_beacons",
        0.55,
        (
            r"!\[[^\]\n]*\]\(\s*https?://[^)\s]*\?[^)\s]*=",
            rf"\b(?:append|add|encode|include)\b{_within(60)}\b(?:to|in) the (?:url|link|image url|query string)\b",
            r"(?:<!--|\[//\]: #|\{\{#if)[^\n]{0,30}?\bassistant\b",
        ),
    ),
)
# A name that asks for a local secret's contents (a parameter named
# `content_from_reading_ssh_id_rsa`: the model fills it in, and the tool's server gets the key),
# read in a name's words (`name_words`): the secret's file, and a word that takes what is in it
_NAMED_SECRET = (
    r"\b(?:ssh (?:private|dir|directory|folder)|id (?:rsa|ed25519|ecdsa|dsa)|authorized keys|dot ?env|env file|"
    r"mcp (?:json|config)|claude desktop config|aws (?:credentials|config)|kube ?config|netrc|npmrc|pypirc|"
    r"git credentials|docker config|etc (?:passwd|shadow)|keychain|wallet dat|browser cookies|saved passwords|"
    r"(?:your|current|assistant|own|full|entire) system prompt)\b"
)
# (a noun for what is in it, not a verb: a tool's own name is a verb's, "read_kubeconfig")
_NAME_TAKES_SECRET = _Family(
    "name_takes_secret",
    0.0,
    (
        rf"\b(?:contents?|text|body|output|copy|dump) (?:of|from)\b[^\n]{{0,40}}?{_NAMED_SECRET}",
        rf"\bfrom reading\b[^\n]{{0,40}}?{_NAMED_SECRET}",
        rf"{_NAMED_SECRET}[^\n]{{0,40}}?\b(?:contents?|text|body|dump|verbatim|in full)\b",
    ),
)
# Where a name is split into words: between a lower-case letter or digit and an upper-case one
# (camelCase), and at the separators identifiers use
_NAME_BREAK = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|[_.\-/:]+")


def name_words(name: str) -> str:
    """A name as the words it is made of ("content_from_reading_ssh_id_rsa", "readSshKey": what
    the model reads in it); a name without a break stays as it is."""
    if name.islower() and "-" not in name and "." not in name and "/" not in name and ":" not in name:
        # (snake case, most names: no camel-case break, only underscores; ≈0.3 µs, not ≈1.7)
        return " ".join(filter(None, name.split("_"))) if "_" in name else name
    return " ".join(w for w in _NAME_BREAK.split(name) if w) if _NAME_BREAK.search(name) else name


# A name written into a description (a signature line, `add(a, b, content_from_reading_ssh_id_rsa)`):
# an identifier of three words or more, snake or camel case
# (a word with an underscore, or a lower-case start and a capital later: whole words at once, where
# an expression of its parts backtracked at every word, ≈60 µs per 1,000 words)
_IDENTIFIER = re.compile(r"\b[A-Za-z0-9]+_[A-Za-z0-9_]+|\b[a-z][a-z0-9]*[A-Z][A-Za-z0-9]*")


# What every name `_NAME_TAKES_SECRET` takes holds, in any case: a text without any holds none
# (one Hyperscan pass, ≈2 µs for 5 KB, where the identifiers' search costs ≈30 ns a character
# and a substring test per stem ≈2.5 µs each)
_NAME_STEMS = (
    "rsa", "dsa", "ed25519", "ssh", "authorized", "env", "mcp", "claude", "aws", "kube", "netrc", "npmrc", "pypirc",
    "credential", "docker", "passwd", "shadow", "keychain", "wallet", "cookie", "password", "prompt",
)  # fmt: skip


def _name_taking_secret(text: str) -> tuple[int, int] | None:
    """Where a name in a description asks for a local secret's contents (`_NAME_TAKES_SECRET` on
    its words), if one does."""
    database, scratch = _name_stems()
    stems: list[int] = []
    database.scan(
        text.encode("utf-8", "surrogatepass"),
        match_event_handler=_note_stem,
        context=stems,
        scratch=scratch.clone(),
    )
    if not stems:
        return None
    for identifier in _IDENTIFIER.finditer(text):
        words = name_words(identifier.group())
        if words.count(" ") >= 2 and _NAME_TAKES_SECRET.pattern.search(words) is not None:
            return identifier.span()
    return None


@functools.lru_cache(maxsize=1)
def _name_stems() -> tuple[hyperscan.Database, hyperscan.Scratch]:
    return compiled_database(
        _NAME_STEMS, hyperscan.HS_FLAG_CASELESS | hyperscan.HS_FLAG_SINGLEMATCH, literal=True
    )


def _note_stem(_id: int, _start: int, _end: int, _flags: int, found: object) -> None:
    cast("list[int]", found).append(_id)


# What a name is read as: one short line (`name_words`); a description's line is read as a
# sentence, by the hand-over rule
_NAME_CHARS = 120
TAKE_AND_HAND_OVER = "tool_exfiltrates"
TAKE_AND_HAND_OVER_WEIGHT = 0.7  # the user's secrets or data, and an order to hand them over, in one sentence
CREDENTIAL_HAND_OVER_WEIGHT = 0.3  # credentials in general, and such an order (a tool may rightly take a key)
TAKE_WEIGHT = 0.2  # the user's secrets or data named without such an order near
# A sentence ends at . ! ? followed by a space or the end (not the dot of a path or a URL), at a
# CJK full stop, or at a line break
_SENTENCE = re.compile(r"[^.!?。！？\n]*(?:[.!?](?!\s|$)[^.!?。！？\n]*)*(?:[.!?]+(?=\s|$)|[。！？]|\n|$)")


_GROUPS = (*_FAMILIES, _LOCAL_SECRET, _CREDENTIAL, _HAND_OVER, _NAME_TAKES_SECRET)
# (the gate's group numbers of the four after the families)
_LOCAL_GROUP, _CREDENTIAL_GROUP, _HAND_OVER_GROUP, _NAME_GROUP = range(len(_FAMILIES), len(_GROUPS))
# Families whose match a sentence can turn into a safeguard by forbidding it first ("never push to
# the remote unless asked", "never purchase paid seats without asking", "never start a server on
# 0.0.0.0 without telling the user"): a match counts only where its sentence forbids nothing
# before it. (An order that forbids, "do not ask for confirmation", begins the match itself.)
_SAFEGUARDED = frozenset(
    {"tool_conceals", "tool_shadows", "tool_hijacks", "tool_sends_out", "tool_overreach", "tool_destroys"}
)
# Where the sentence a match is in begins: after the last sentence end or line break before it
_SENTENCE_END = re.compile(r"(?:[.!?;:](?=\s)|[。！？；：]|\n)")
# A note that the user does not see something is no concealment when the description goes on to
# say it is to be passed on ("that result is not visible to the user. To share it, summarize ...")
_PASSED_ON = re.compile(
    r"\b(?:summari[sz]e|summary|merge them|combine them|share it|share them|relay|pass (?:it|them|this) on|tell the user|"
    r"show (?:it|them) to the user|"
    r"report (?:it |them )?back|in your (?:reply|answer|response|message))\b",
    _FLAGS,
)
# Naming another tool to prefer it over this one ("if an MCP-provided fetch tool is available,
# prefer using that tool instead of this one") is a pointer, not shadowing
_DEFERS = re.compile(
    r"\bprefer(?:ring)? (?:using )?(?:that|it|the other)\b|\binstead of this (?:one|tool)\b", _FLAGS
)
_NOT_SEEN = re.compile(r"\b(?:see|sees|seen|visible|shown)\b", _FLAGS)
_PASSED_ON_CHARS = 160


# How far before a match its sentence is read for a word that forbids it
_SENTENCE_REACH = 400


class _Sentences:
    """Where the sentences of one definition begin and where a word forbids (each found once, when a
    match first asks: a definition may hold thousands of matches)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._starts: list[int] = []
        self._forbidding: list[int] = []
        self._found = False

    def _find(self) -> None:
        if not self._found:
            self._starts = [0, *(end.end() for end in _SENTENCE_END.finditer(self.text))]
            self._forbidding = [word.start() for word in _FORBIDDEN.finditer(self.text)]
            self._found = True

    def forbidden(self, at: int) -> bool:
        """Whether a word that forbids (_FORBIDDEN) begins in the sentence holding `at`, before it
        (at most _SENTENCE_REACH characters before it)."""
        start = self.around(at)[0]
        first = bisect_left(self._forbidding, start)
        return first < len(self._forbidding) and self._forbidding[first] < at

    def around(self, at: int) -> tuple[int, int]:
        """The sentence holding `at` (at most _SENTENCE_REACH characters either side of it)."""
        self._find()
        i = bisect_right(self._starts, at)
        end = self._starts[i] if i < len(self._starts) else len(self.text)
        return max(self._starts[i - 1], at - _SENTENCE_REACH), min(end, at + _SENTENCE_REACH)


# The user's consent asked for in the sentence: an act it names is a safeguarded one ("only grant
# write access when the user explicitly asks", "must be true for migrations containing DROP TABLE")
_CONSENT = re.compile(
    r"\bonly (?:if|when|after)\b[^.\n]{0,60}?\buser\b|\bonly\b[^.\n]{0,40}?\b(?:when|if|after)\b[^.\n]{0,30}?\buser\b "
    r"(?:explicitly )?(?:asks|requests|approves|confirms|says)\b|\b(?:after|once) the user (?:explicitly )?(?:approves|confirms|"
    r"has approved|has confirmed|agrees)\b|\bwith the user'?s (?:explicit )?(?:approval|confirmation|consent|go-ahead)\b|"
    r"\bunless the user (?:explicitly )?(?:asks|requests)\b|\b(?:ask|get|obtain|require|requires|wait for|needs?)\b"
    r"[^.\n]{0,30}?\b(?:confirm\w*|approv\w*|consent|go-ahead)\b|\bmust be true\b|\bconfirm_\w+|\bdry_run\b",
    _FLAGS,
)
_CONSENTED = frozenset({"tool_hijacks", "tool_destroys", "tool_sends_out"})
# A sentence's end inside a match: its two halves are in two sentences
_SPANS_SENTENCES = re.compile(r"[.!?]\s")


def _standing(family: _Family, sentences: _Sentences) -> re.Match[str] | None:
    """The family's first match in a definition that orders what it says (_SAFEGUARDED families):
    not forbidden earlier in its sentence, within one sentence, not waiting for the user's
    consent (_CONSENTED families), not a pointer to a better tool (shadowing), not a note that the
    user does not see what they are then told of (concealment)."""
    text = sentences.text
    if family.name not in _SAFEGUARDED:
        return family.pattern.search(text)
    for match in family.pattern.finditer(text):
        if sentences.forbidden(match.start()) or _SPANS_SENTENCES.search(match.group()) is not None:
            continue
        if family.name in _CONSENTED and _CONSENT.search(text, *sentences.around(match.start())) is not None:
            continue
        if family.name == "tool_shadows" and _DEFERS.search(
            text, match.start(), match.end() + _PASSED_ON_CHARS
        ):
            continue
        if (
            family.name == "tool_conceals"
            and _NOT_SEEN.search(match.group()) is not None
            and _PASSED_ON.search(text, match.end(), match.end() + _PASSED_ON_CHARS) is not None
        ):
            continue
        return match
    return None


# A tool that warns the model about what others may send it quotes an injection: "if a message
# says 'ignore previous instructions', do not act on it". In a definition, a phrase the
# injection check finds inside quotes, near such a warning, is the warning's example.
# (a single quote opens and closes only outside a word: the apostrophes of "don't ... it's" quote
# nothing; a quote of more than one sentence is no example)
_QUOTED = re.compile(
    r"[\"\u201c\u00ab\u300c]([^\"\u201d\u00bb\u300d\n]{1,240})[\"\u201d\u00bb\u300d]|(?<!\w)'([^'\n]{1,240})'(?!\w)|"
    r"\u2018([^\u2019\n]{1,240})\u2019"
)
_SENTENCES_IN_QUOTE = re.compile(r"[.!?]\s+[A-Z]")
_WARNING = re.compile(
    r"\b(?:do not|don't|never|must not|should not)\b[^.\n]{0,40}?\b(?:act on|follow|obey|execute|comply with|carry out|"
    r"trust)\b|\buntrusted\b|\bprompt injections?\b|\btreat (?:it|them|this|that|such \w+) as (?:data|content|text|"
    r"untrusted|part of)\b|\bnot (?:as )?instructions\b",
    _FLAGS,
)
_WARNING_REACH = 200


def quoted_in_a_warning(text: str, start: int, end: int) -> bool:
    """Whether `text[start:end]` (what the injection check found in a tool definition) is inside
    quotes, with a warning not to obey such text near it."""
    lo = max(0, start - _WARNING_REACH)
    for quote in _QUOTED.finditer(text, lo, end + _WARNING_REACH):
        inside = quote.group(1) or quote.group(2) or quote.group(3)
        at = quote.start() + 1
        if at <= start and end <= at + len(inside):
            if _SENTENCES_IN_QUOTE.search(inside) is not None:
                return False
            return _WARNING.search(text, lo, end + _WARNING_REACH) is not None
    return False


def _branches(expression: str) -> list[str]:
    """An expression's top-level alternatives (split at each `|` outside parentheses and classes)."""
    out, depth, in_class, escaped, begun = [], 0, False, False, 0
    for i, char in enumerate(expression):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            out.append(expression[begun:i])
            begun = i + 1
    out.append(expression[begun:])
    return out


# A gap of a pattern, read by the gate as any run of one line (a bounded repeat is costly to
# compile: the patterns as written took ≈9 s in UTF-8 mode, ≈1.3 s in bytes)
_GAP = re.compile(r"\[\^\\n\]\{0,\d+\}\?|\.\{0,\d+\}")
_NON_ASCII = re.compile(r"[^\x00-\x7f]")


def _ascii_stand_in(match: re.Match[str]) -> str:
    # (a letter or digit stays a word character for \w and \b, as for Python's `re`)
    return "a" if match.group().isalnum() else " "


Gate = tuple[
    tuple[hyperscan.Database, hyperscan.Scratch], tuple[int, ...], tuple[re.Pattern[str] | None, ...]
]


@functools.lru_cache(maxsize=1)
def _gate() -> Gate:
    """A gate that says which groups may match in a definition, so only those are searched:
    Python's `re` reads these alternations at ≈0.5 µs a character each. Every ASCII branch of
    every pattern, its gaps widened to the line, in one Hyperscan database, read over the
    lower-cased text with each non-ASCII character as an ASCII stand-in; the branches in other
    scripts, per group, by `re`, only in a text that is not ASCII. It may report a group whose
    expression then finds nothing, never the reverse (tests/unit/guard/test_poisoning.py).
    Returns the database, the group of each of its expressions, and each group's non-ASCII
    branches."""
    expressions: list[str] = []
    owners: list[int] = []
    others: list[list[str]] = [[] for _ in _GROUPS]
    for i, group in enumerate(_GROUPS):
        for alternative in group.alternatives:
            for branch in _branches(alternative):
                if branch.isascii():
                    expressions.append(_GAP.sub(r"[^\\n]*", branch))
                    owners.append(i)
                else:
                    others[i].append(branch)
    # (every match reported, not each expression's first: a request's definitions are read in one
    # pass, each match's end telling which definition it is in)
    flags = hyperscan.HS_FLAG_CASELESS
    scripts = tuple(
        re.compile("|".join(f"(?:{b})" for b in branches), _FLAGS) if branches else None
        for branches in others
    )
    return compiled_database(expressions, flags), tuple(owners), scripts


def _note_group(_id: int, _start: int, _end: int, _flags: int, found: object) -> None:
    assert isinstance(found, set)
    found.add(_id)


def _note_end(_id: int, _start: int, end: int, _flags: int, found: object) -> None:
    cast("list[tuple[int, int]]", found).append((_id, end))


class PoisoningScorer:
    """Scores each definition of a request's tool definitions (paragraphs of the joined text)."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        (self._database, self._scratch), self._owners, self._scripts = _gate()

    def find(self, text: str) -> list[Finding]:
        best: tuple[float, str, int, int] | None = None
        paragraphs = text.split(DEFINITIONS_APART)
        # An ASCII text is gated in one pass (most definitions are names and short descriptions,
        # which the gate finds nothing in: ≈2 µs each to scan alone); any other, one by one (a
        # lower-cased letter may take two characters: the offsets would not be the text's)
        gated = self._groups_each(text, paragraphs) if text.isascii() else None
        start = 0
        for i, paragraph in enumerate(paragraphs):
            end = start + len(paragraph)
            groups = self._groups(paragraph) if gated is None else gated[i]
            scored = self._score(paragraph, groups) if groups else None
            if scored is not None and scored[0] >= self.threshold and (best is None or scored[0] > best[0]):
                best = (scored[0], scored[1], start + scored[2], start + scored[3])
            start = end + len(DEFINITIONS_APART)
        # (a name written into a description is read in its words, which the gate does not see:
        # one search of the whole text)
        if (best is None or best[0] < TAKE_AND_HAND_OVER_WEIGHT) and (
            named := _name_taking_secret(text)
        ) is not None:
            best = (TAKE_AND_HAND_OVER_WEIGHT, TAKE_AND_HAND_OVER, *named)
        if best is None or best[0] < self.threshold:
            return []
        return [Finding("injection", best[1], best[2], best[3])]

    def _groups_each(self, text: str, paragraphs: list[str]) -> list[set[int]]:
        """The groups the gate reports in each paragraph of an ASCII text, from one scan: a match
        belongs to the paragraph its end is in (one that spans two, which a regular expression
        of one definition cannot match, is reported for the second: the gate may over-report)."""
        ends: list[tuple[int, int]] = []
        self._database.scan(
            text.lower().encode("ascii"),
            match_event_handler=_note_end,
            context=ends,
            scratch=self._scratch.clone(),
        )
        found: list[set[int]] = [set() for _ in paragraphs]
        if not ends:
            return found
        bounds, at = [], 0
        for paragraph in paragraphs:
            at += len(paragraph) + len(DEFINITIONS_APART)
            bounds.append(at)
        owners = self._owners
        for expression, end in ends:
            found[min(bisect_right(bounds, end - 1), len(paragraphs) - 1)].add(owners[expression])
        return found

    def _groups(self, definition: str) -> set[int]:
        """The groups (indices in _GROUPS) the gate reports in a definition."""
        hits: set[int] = set()
        lowered = definition.lower()
        groups: set[int] = set()
        if not lowered.isascii():
            groups = {
                i
                for i, script in enumerate(self._scripts)
                if script is not None and script.search(definition)
            }
            lowered = _NON_ASCII.sub(_ascii_stand_in, lowered)
        self._database.scan(
            lowered.encode("ascii"),
            match_event_handler=_note_group,
            context=hits,
            scratch=self._scratch.clone(),
        )
        return groups | {self._owners[i] for i in hits}

    def score(self, definition: str) -> tuple[float, str, int, int] | None:
        """(score, the heaviest family, where its match is) of one definition; None: no signal."""
        scored = self._score(definition, self._groups(definition))
        if scored is None and (named := _name_taking_secret(definition)) is not None:
            return TAKE_AND_HAND_OVER_WEIGHT, TAKE_AND_HAND_OVER, *named
        return scored

    def _score(self, definition: str, groups: set[int]) -> tuple[float, str, int, int] | None:
        """`score`, given the groups the gate reports in the definition, less the names written into
        it (`_name_taking_secret`: `find` reads them in the whole text once)."""
        if not groups:
            return None
        found: dict[str, tuple[float, int, int]] = {}
        sentences = _Sentences(definition)
        for i, family in enumerate(_FAMILIES):
            if i in groups and (match := _standing(family, sentences)) is not None:
                found[family.name] = (family.weight, match.start(), match.end())
        local = _LOCAL_SECRET.pattern.search(definition) if _LOCAL_GROUP in groups else None
        if _HAND_OVER_GROUP in groups and (local is not None or _CREDENTIAL_GROUP in groups):
            for sentence in _SENTENCE.finditer(definition):
                text = sentence.group()
                handed = _HAND_OVER.pattern.search(text)
                if (
                    handed is None
                    or _FORBIDDEN.search(handed.group())
                    or _FORBIDS_NEXT.search(
                        text, max(0, handed.start() - _FORBIDS_NEXT_CHARS), handed.start()
                    )
                ):
                    continue
                if _LOCAL_SECRET.pattern.search(text) is not None:
                    found[TAKE_AND_HAND_OVER] = (TAKE_AND_HAND_OVER_WEIGHT, sentence.start(), sentence.end())
                    break
                if _CREDENTIAL.pattern.search(text) is not None:
                    found[TAKE_AND_HAND_OVER] = (
                        CREDENTIAL_HAND_OVER_WEIGHT,
                        sentence.start(),
                        sentence.end(),
                    )
        if (
            _NAME_GROUP in groups
            and len(definition) <= _NAME_CHARS
            and "\n" not in definition
            and (named := _NAME_TAKES_SECRET.pattern.search(definition)) is not None
        ):
            found[TAKE_AND_HAND_OVER] = (TAKE_AND_HAND_OVER_WEIGHT, named.start(), named.end())
        if local is not None and TAKE_AND_HAND_OVER not in found:
            found["tool_names_secret"] = (TAKE_WEIGHT, local.start(), local.end())
        if not found:
            return None
        miss = 1.0
        for weight, _, _ in found.values():
            miss *= 1.0 - weight
        name, (_, at, to) = max(found.items(), key=lambda item: item[1][0])
        return 1.0 - miss, name, at, to
