"""Prompt injection in languages the English scorer (injection.py) does not read.

Chinese, Japanese, Korean, Russian, Ukrainian, Italian, Dutch, Polish, Turkish, Indonesian,
Vietnamese, Arabic, Hindi and Swedish: for each, the words of three orders a model should not
take from a user, matched within one sentence in the language's own word order (the verb after
its object in Japanese, Korean, Turkish and Hindi):

- override: a verb that voids instructions ("忽略", "無視", "игнорируй", "ignora") and what it
  voids (instructions, rules, prompt, guidelines), weighing OVERRIDE_WEIGHT;
- exfiltration: a verb that shows ("告诉我", "表示", "покажи", "mostrami") and the system prompt
  ("系统提示", "システムプロンプト", "системный промпт"), weighing EXFILTRATE_WEIGHT;
- an unrestricted persona: "without restrictions" and "from now on / you are now" in the same
  line, each PERSONA_WEIGHT (together over the default threshold, alone under it).

A match inside quotation marks, or in a line with a word of discussion ("什么是", "なぜ",
"что такое", "perché", "attack"), is a mention, and one near a document's or a log's name
("说明书", "説明書", "manuale": a manual's old instructions) is the document's: each weighs
MENTION_WEIGHT; a prohibition ("不要忽略", "не игнорируй", "अनदेखा मत") weighs nothing.
Weights of different orders in one line add up as the English scorer's do (1 - product of
misses). Spanish, French, German and Portuguese overrides are the English scorer's (its
multilingual signal). What it cannot tell: any paraphrase without these words, sarcasm, and
the rest of the world's languages (docs/security.md).

The pre-scan finds these languages' trigger words (`TRIGGERS`: the override verbs, the
system-prompt phrases and the unrestricted phrases): the ASCII ones in its compiled pass, the
others in the pass over a non-ASCII text's UTF-8 (disguise.disguises), so a text without any
pays nothing here.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import hyperscan

from inferpool.guard.findings import Finding

OVERRIDE_WEIGHT = 0.6
EXFILTRATE_WEIGHT = 0.6
PERSONA_WEIGHT = 0.3
MENTION_WEIGHT = 0.2
# Characters that end a sentence (a match lies within one), and the most between a verb and its
# object
_STOPS = ".!?。！？\n؟।"
_GAP = 28
# What stands before a mention, and after (“”, 「」, 『』, «», „“, "")
_QUOTES = {"“": "”", "「": "」", "『": "』", "«": "»", "„": "“", '"': '"', "‘": "’"}
# Where a document's name makes a match its: this many characters before it, and the rest of its
# clause after it, up to three times as many
_DOCUMENT_REACH = 20
_CLAUSE_ENDS = re.compile(f"[,，、;；:：{re.escape(_STOPS)}]")
# Everywhere, a log is a document too ("show the system message from yesterday's server log")
_LOGS = ("log", "日志", "日誌", "ログ", "로그", "лог", "журнал")


@dataclass(frozen=True)
class _Language:
    verbs: tuple[str, ...]  # that void instructions
    targets: tuple[str, ...]  # instructions, rules, prompt, guidelines (stems)
    reveal: tuple[str, ...]  # show, print, tell
    prompt: tuple[str, ...]  # the system prompt
    unrestricted: tuple[str, ...]
    persona: tuple[str, ...]  # from now on, you are now
    discussion: tuple[str, ...]
    documents: tuple[str, ...]
    object_first: bool = False
    words: bool = False  # a script with spaces between words: verbs and phrases start at a word's edge
    # words that make the verb's order a prohibition ("不要忽略", "не игнорируй", "jangan
    # abaikan"): just before the match (verb first) or just after it (object first: "अनदेखा मत")
    negations: tuple[str, ...] = ()


_LANGUAGES: dict[str, _Language] = {
    "zh": _Language(
        negations=("不要", "别", "別", "不能", "不可", "勿", "不得"),
        verbs=("忽略", "无视", "無視", "忽视", "忽視", "忘记", "忘記", "忘掉", "不要理会", "不要理會", "抛开", "拋開"),
        targets=("指令", "指示", "规则", "規則", "提示词", "提示詞", "准则", "準則", "约束", "約束", "设定", "設定"),
        reveal=("告诉我", "告訴我", "显示", "顯示", "输出", "輸出", "打印", "泄露", "洩露", "展示", "给我看", "給我看",
                "复述", "複述", "重复", "重複"),
        prompt=("系统提示", "系統提示", "系统指令", "系統指令", "初始指令", "隐藏指令", "隱藏指令", "系统消息", "系統訊息"),
        unrestricted=("不受任何", "没有任何限制", "沒有任何限制", "不再受", "无限制", "無限制", "没有限制", "沒有限制",
                      "不受限制"),
        persona=("从现在开始", "從現在開始", "从现在起", "從現在起", "现在你是", "現在你是", "你现在是", "你現在是"),
        discussion=("什么是", "什麼是", "为什么", "為什麼", "如何", "怎么", "怎麼", "攻击", "攻擊", "防御", "防禦",
                    "例如", "比如", "解释", "解釋"),
        documents=("说明书", "說明書", "手册", "手冊", "邮件", "郵件", "文档", "文檔", "网页", "網頁"),
    ),
    "ja": _Language(
        # (imperative and connective forms: "無視される", ignored, is none)
        verbs=("無視して", "無視しろ", "無視せよ", "無視しなさい", "忘れて", "忘れろ", "忘れなさい", "従わないで", "従うな"),
        targets=("指示", "命令", "ルール", "規則", "プロンプト", "設定", "指令", "制約", "ガイドライン"),
        reveal=("表示", "見せ", "教え", "出力", "開示", "繰り返"),
        prompt=("システムプロンプト", "初期プロンプト", "隠された指示", "システム指示"),
        unrestricted=("制限のない", "制限なし", "制限なく", "制約のない", "ルールのない"),
        persona=("今から", "これから", "今後", "あなたは今"),
        discussion=("とは", "なぜ", "どうやって", "攻撃", "防御", "対策", "例えば"),
        documents=("説明書", "マニュアル", "メール", "文書", "ページ"),
        object_first=True,
    ),
    "ko": _Language(
        # (imperative and connective forms: "무시하면 안 됩니다", must not be ignored, is none)
        verbs=("무시해", "무시하고", "무시하세요", "무시하십시오", "잊어", "잊고", "따르지 마"),
        targets=("지시", "명령", "규칙", "프롬프트", "지침", "설정", "제한"),
        reveal=("출력", "보여", "알려", "공개", "표시", "말해"),
        prompt=("시스템 프롬프트", "시스템프롬프트", "초기 지시", "숨겨진 지시"),
        unrestricted=("제한도 없는", "제한 없는", "제한이 없는", "규칙도 없는"),
        persona=("지금부터", "이제부터", "이제 너는"),
        discussion=("어떻게", "무엇", "왜", "공격", "방어", "예를 들어"),
        documents=("설명서", "매뉴얼", "이메일", "문서"),
        object_first=True,
    ),
    "ru": _Language(
        negations=("не ",),
        verbs=("игнорируй", "проигнорируй", "забудь", "не обращай внимания на", "отбрось"),
        targets=("инструкци", "указани", "правил", "промпт", "ограничени"),
        reveal=("покажи", "выведи", "раскрой", "напечатай", "повтори", "скажи"),
        prompt=("системный промпт", "системные инструкции", "системное сообщение", "системного промпта"),
        unrestricted=("без ограничений", "без каких-либо ограничений", "без фильтров"),
        persona=("теперь ты", "с этого момента", "отныне"),
        discussion=("что такое", "почему", "атак", "защит", "например"),
        documents=("руководств", "письм", "документ"),
        words=True,
    ),
    "uk": _Language(
        negations=("не ",),
        verbs=("ігноруй", "проігноруй", "забудь", "не звертай уваги на"),
        targets=("інструкці", "вказівк", "правил", "промпт", "обмежен"),
        reveal=("покажи", "виведи", "розкрий", "надрукуй", "повтори", "скажи"),
        prompt=("системний промпт", "системні інструкції", "системне повідомлення"),
        unrestricted=("без обмежень", "без фільтрів"),
        persona=("тепер ти", "відтепер", "з цього моменту"),
        discussion=("що таке", "чому", "атак", "захист", "наприклад"),
        documents=("посібник", "лист", "документ"),
        words=True,
    ),
    "it": _Language(
        negations=("non ",),
        verbs=("ignora", "ignorate", "dimentica", "dimenticate", "non seguire", "trascura"),
        targets=("istruzioni", "regole", "indicazioni", "prompt", "linee guida", "restrizioni", "limitazioni"),
        reveal=("mostrami", "mostra", "rivela", "stampa", "ripeti", "dimmi", "scrivi"),
        prompt=("prompt di sistema", "istruzioni di sistema", "messaggio di sistema", "istruzioni nascoste"),
        unrestricted=("senza alcun filtro", "senza filtri", "senza limiti", "senza restrizioni",
                      "senza alcuna restrizione"),
        persona=("da ora in poi", "d'ora in poi", "adesso sei", "ora sei"),
        discussion=("cos'è", "cosa è", "perché", "attacc", "difes", "ad esempio", "per esempio"),
        documents=("manuale", "email", "e-mail", "documento", "pagina", "libretto"),
        words=True,
    ),
    "nl": _Language(
        negations=("niet ",),
        verbs=("negeer", "vergeet"),
        targets=("instructies", "regels", "richtlijnen", "prompt", "beperkingen"),
        reveal=("laat", "toon", "geef", "print", "herhaal"),
        prompt=("systeemprompt", "systeeminstructies", "systeembericht"),
        unrestricted=("zonder beperkingen", "zonder filters", "zonder regels"),
        persona=("vanaf nu", "je bent nu"),
        discussion=("wat is", "waarom", "aanval", "verdediging", "bijvoorbeeld"),
        documents=("handleiding", "e-mail", "document", "pagina"),
        words=True,
    ),
    "pl": _Language(
        negations=("nie ",),
        verbs=("zignoruj", "zignorujcie", "ignoruj", "zapomnij", "zapomnijcie", "pomiń"),
        targets=("instrukcj", "polece", "zasad", "reguł", "prompt", "ograniczen", "wytyczn"),
        reveal=("wypisz", "pokaż", "ujawnij", "wyświetl", "powtórz", "podaj"),
        prompt=("prompt systemowy", "systemowy prompt", "instrukcje systemowe", "komunikat systemowy"),
        unrestricted=("bez ograniczeń", "bez filtrów", "bez żadnych zasad"),
        persona=("od teraz", "teraz jesteś"),
        discussion=("co to jest", "dlaczego", "atak", "obron", "na przykład"),
        documents=("instrukcji obsługi", "podręcznik", "e-mail", "dokument", "stron"),
        words=True,
    ),
    "tr": _Language(
        verbs=("yok say", "görmezden gel", "unut", "dikkate alma", "uyma"),
        targets=("talimat", "kural", "yönerge", "istem", "kısıtlama", "komut"),
        reveal=("göster", "yazdır", "açıkla", "tekrarla", "söyle"),
        prompt=("sistem istem", "sistem talimat", "sistem mesaj"),
        unrestricted=("kısıtlama olmadan", "sınırsız", "filtresiz", "kuralsız"),
        persona=("şu andan itibaren", "artık sen", "bundan sonra"),
        discussion=("nedir", "neden", "nasıl", "saldırı", "savunma", "örneğin"),
        documents=("kılavuz", "e-posta", "belge", "sayfa"),
        object_first=True,
        words=True,
    ),
    "id": _Language(
        negations=("jangan ", "tidak "),
        verbs=("abaikan", "lupakan", "jangan ikuti", "acuhkan"),
        targets=("instruksi", "perintah", "aturan", "petunjuk", "prompt", "batasan"),
        reveal=("tampilkan", "tunjukkan", "cetak", "ulangi", "beritahu", "berikan"),
        prompt=("prompt sistem", "instruksi sistem", "pesan sistem"),
        unrestricted=("tanpa batasan", "tanpa filter", "tanpa aturan"),
        persona=("mulai sekarang", "sekarang kamu"),
        discussion=("apa itu", "mengapa", "kenapa", "bagaimana", "serangan", "pertahanan", "misalnya"),
        documents=("buku panduan", "manual", "email", "dokumen", "halaman"),
        words=True,
    ),
    "vi": _Language(
        negations=("đừng ", "không ", "chớ "),
        verbs=("bỏ qua", "phớt lờ", "quên", "lờ đi", "đừng làm theo"),
        targets=("hướng dẫn", "chỉ dẫn", "quy tắc", "lệnh", "chỉ thị", "giới hạn"),
        reveal=("cho tôi xem", "hiển thị", "in ra", "tiết lộ", "nhắc lại", "cho biết"),
        prompt=("lời nhắc hệ thống", "prompt hệ thống", "chỉ dẫn hệ thống", "thông điệp hệ thống"),
        unrestricted=("không có giới hạn", "không giới hạn", "không bị giới hạn", "không có bộ lọc"),
        persona=("từ bây giờ", "bây giờ bạn là"),
        discussion=("là gì", "tại sao", "làm thế nào", "như thế nào", "tấn công", "phòng thủ", "ví dụ"),
        documents=("sách hướng dẫn", "email", "tài liệu", "trang"),
        words=True,
    ),
    "ar": _Language(
        negations=("لا ",),
        verbs=("تجاهل", "انس", "لا تتبع"),
        targets=("التعليمات", "تعليمات", "القواعد", "الأوامر", "التوجيهات", "القيود"),
        reveal=("اعرض", "أظهر", "اطبع", "اكشف", "كرر", "أخبرني"),
        prompt=("موجه النظام", "تعليمات النظام", "رسالة النظام"),
        unrestricted=("بدون قيود", "دون قيود", "بلا قيود"),
        persona=("من الآن", "أنت الآن"),
        discussion=("ما هو", "ما هي", "لماذا", "كيف", "هجوم", "هجمات", "الدفاع", "مثال"),
        documents=("الدليل", "البريد", "المستند", "الصفحة"),
    ),
    "hi": _Language(
        negations=(" मत", " न "),
        verbs=("अनदेखा", "नज़रअंदाज़", "नजरअंदाज", "भूल जाओ", "भूल जाएं", "मत मानो"),
        targets=("निर्देश", "नियम", "आदेश", "प्रॉम्प्ट", "प्रतिबंध"),
        reveal=("दिखाओ", "दिखाएं", "बताओ", "बताएं", "प्रिंट करो", "दोहराओ"),
        prompt=("सिस्टम प्रॉम्प्ट", "सिस्टम निर्देश", "सिस्टम संदेश"),
        unrestricted=("बिना किसी प्रतिबंध", "बिना प्रतिबंध", "बिना किसी नियम"),
        persona=("अब से", "अब तुम"),
        discussion=("क्या है", "क्यों", "कैसे", "हमला", "हमले", "बचाव", "उदाहरण"),
        documents=("मैनुअल", "ईमेल", "दस्तावेज़", "पेज"),
        object_first=True,
    ),
    "sv": _Language(
        negations=("inte ",),
        verbs=("ignorera", "glöm", "bortse från", "strunta i"),
        targets=("instruktioner", "regler", "riktlinjer", "prompt", "begränsningar"),
        reveal=("visa", "skriv ut", "avslöja", "upprepa", "berätta"),
        prompt=("systemprompt", "systeminstruktioner", "systemmeddelande"),
        unrestricted=("utan begränsningar", "utan filter", "utan regler"),
        persona=("från och med nu", "du är nu"),
        discussion=("vad är", "varför", "attack", "försvar", "till exempel"),
        documents=("bruksanvisning", "manual", "e-post", "dokument", "sida"),
        words=True,
    ),
}  # fmt: skip


def _triggers(lang: _Language) -> tuple[str, ...]:
    return (*lang.verbs, *lang.prompt, *lang.unrestricted)


def case_variants(word: str) -> tuple[str, ...]:
    """`word` as a text may write it: as it is, with a capital first letter, in capitals (the
    compiled passes read ASCII letters lower-cased, other letters as written)."""
    return tuple(dict.fromkeys((word, word[:1].upper() + word[1:], word.upper())))


# The words whose presence lets an order above reach a threshold (the pre-scan looks for them:
# the ASCII ones in its compiled pass, the others in the pass over a text's UTF-8)
TRIGGERS: tuple[str, ...] = tuple(sorted({w for lang in _LANGUAGES.values() for w in _triggers(lang)}))
ASCII_TRIGGERS = tuple(w for w in TRIGGERS if w.isascii())


def utf8_expression(words: tuple[str, ...]) -> bytes:
    """A Hyperscan expression for any of `words` (and their case variants) in UTF-8 whose ASCII
    letters are lower-cased, as the disguise pass reads a text."""
    variants = {v.encode("utf-8").lower() for w in words for v in case_variants(w)}
    return b"|".join(b"".join(b"\\x%02x" % b for b in v) for v in sorted(variants))


@functools.cache
def _trigger_database() -> tuple[hyperscan.Database, hyperscan.Scratch]:
    """Each language's triggers, reported as the language's number (in `_COMPILED`'s order)."""
    expressions = [utf8_expression(_triggers(lang)) for lang in _LANGUAGES.values()]
    database = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
    database.compile(expressions=expressions, ids=list(range(len(expressions))), elements=len(expressions))
    return database, hyperscan.Scratch(database)


def _alternation(words: tuple[str, ...], edge: bool, whole: bool = False) -> str:
    """Any of `words`; with `edge`, where a word begins, and with `whole` too, where it ends
    (verbs are whole words, "mostra" is no "mostrarmi"; targets are stems, "instrukcj")."""
    body = "|".join(re.escape(w) for w in sorted(words, key=len, reverse=True))
    if not edge:
        return f"(?:{body})"
    return rf"\b(?:{body})\b" if whole else rf"\b(?:{body})"


def _pair(first: str, second: str) -> re.Pattern[str]:
    return re.compile(f"{first}[^{re.escape(_STOPS)}]{{0,{_GAP}}}?{second}", re.IGNORECASE)


@dataclass(frozen=True)
class _Compiled:
    orders: tuple[tuple[str, float, re.Pattern[str]], ...]  # (family, weight, pattern)
    language: _Language


def _compiled(lang: _Language) -> _Compiled:
    def words(items: tuple[str, ...], whole: bool = False) -> str:
        return _alternation(items, lang.words, whole)

    verbs, targets = words(lang.verbs, whole=True), words(lang.targets)
    reveal, prompt = words(lang.reveal, whole=True), words(lang.prompt)
    if lang.object_first:
        override, exfiltrate = _pair(targets, verbs), _pair(prompt, reveal)
    else:
        override, exfiltrate = _pair(verbs, targets), _pair(reveal, prompt)
    return _Compiled(
        (
            ("override_instructions", OVERRIDE_WEIGHT, override),
            ("exfiltrate_prompt", EXFILTRATE_WEIGHT, exfiltrate),
            ("unrestricted_persona", PERSONA_WEIGHT, re.compile(words(lang.unrestricted), re.IGNORECASE)),
            ("role_switch", PERSONA_WEIGHT, re.compile(words(lang.persona), re.IGNORECASE)),
        ),
        lang,
    )


_COMPILED = tuple(_compiled(lang) for lang in _LANGUAGES.values())


def _any_language(words: dict[bool, set[str]]) -> re.Pattern[str]:
    """Any of the words, of every language (a line may mix two: Russian and Ukrainian share
    verbs, Chinese and Japanese characters): those of spaced scripts where a word begins."""
    return re.compile(
        "|".join(_alternation(tuple(sorted(group)), edge) for edge, group in words.items() if group),
        re.IGNORECASE,
    )


def _grouped(pick: Callable[[_Language], tuple[str, ...]]) -> dict[bool, set[str]]:
    groups: dict[bool, set[str]] = {True: set(), False: set()}
    for lang in _LANGUAGES.values():
        groups[lang.words].update(pick(lang))
    return groups


# A word of discussion, and a document's name (a log's too), in any of the languages
_MENTION = _any_language(_grouped(lambda lang: lang.discussion))
_DOCUMENT = _any_language(_grouped(lambda lang: (*lang.documents, *_LOGS)))


def _quoted(line: str, start: int, end: int) -> bool:
    """Whether `line[start:end]` lies between an opening quotation mark and its closing one."""
    for opening, closing in _QUOTES.items():
        before = line.rfind(opening, 0, start)
        if before >= 0 and line.find(closing, end) >= 0 and line.find(closing, before + 1, start) < 0:
            return True
    return False


def _weight(weight: float, line: str, m: re.Match[str], lang: _Compiled) -> float:
    start, end = m.span()
    if weight < OVERRIDE_WEIGHT:
        return weight  # (the persona's halves: only together over a threshold)
    clause_end = _CLAUSE_ENDS.search(line, end, end + 3 * _DOCUMENT_REACH)
    near = line[
        max(0, start - _DOCUMENT_REACH) : clause_end.start() if clause_end else end + 3 * _DOCUMENT_REACH
    ]
    if _quoted(line, start, end) or _MENTION.search(line) or _DOCUMENT.search(near):
        return MENTION_WEIGHT
    language = lang.language
    around = (line[end : end + 6] if language.object_first else line[max(0, start - 6) : start]).lower()
    if any(n in around for n in language.negations):
        return 0.0  # a prohibition: "do not ignore the rules" orders the opposite
    return weight


def _collect(language: int, _start: int, end: int, _flags: int, found: object) -> None:
    cast("list[tuple[int, int]]", found).append((end, language))


def _lines_with_triggers(text: str) -> list[tuple[int, str, set[int]]]:
    """The lines of `text` holding a trigger word: (where the line starts, the line, the numbers
    of the languages whose triggers it holds), in order. One compiled pass over its UTF-8."""
    utf8 = text.encode("utf-8", "surrogatepass").lower()  # (ASCII letters: as the triggers are)
    database, scratch = _trigger_database()
    hits: list[tuple[int, int]] = []
    database.scan(utf8, match_event_handler=_collect, context=hits, scratch=scratch.clone())
    lines: dict[int, tuple[int, set[int]]] = {}  # line start (bytes) -> (end, languages)
    for end, language in hits:
        start = utf8.rfind(b"\n", 0, end) + 1
        if start not in lines:
            stop = utf8.find(b"\n", end)
            lines[start] = (len(utf8) if stop < 0 else stop, set())
        lines[start][1].add(language)
    out = []
    chars, read = 0, 0  # characters in the UTF-8 read so far
    for start in sorted(lines):
        stop, languages = lines[start]
        chars += len(utf8[read:start].decode("utf-8", "surrogatepass"))
        line = text[chars : chars + len(utf8[start:stop].decode("utf-8", "surrogatepass"))]
        out.append((chars, line, languages))
        read = start
    return out


def find(text: str, threshold: float) -> list[Finding]:
    """The first order, in a line whose orders together weigh `threshold` or more, as a finding
    of its family (the span of its heaviest match). A line the text repeats (a chat history, a
    log) is read once."""
    read: set[tuple[str, frozenset[int]]] = set()  # (what found nothing)
    for line_start, line, languages in _lines_with_triggers(text):
        key = (line, frozenset(languages))
        if key in read:
            continue
        read.add(key)
        for number in sorted(languages):
            lang = _COMPILED[number]
            weights: dict[str, tuple[float, int, int]] = {}
            for family, weight, pattern in lang.orders:
                for m in pattern.finditer(line):
                    w = _weight(weight, line, m, lang)
                    if w > weights.get(family, (0.0, 0, 0))[0]:
                        weights[family] = (w, *m.span())
            if not weights:
                continue
            miss = 1.0
            for w, _start, _end in weights.values():
                miss *= 1.0 - w
            if 1.0 - miss + 1e-9 >= threshold:
                family, (_w, start, end) = max(weights.items(), key=lambda item: item[1][0])
                return [Finding("injection", family, line_start + start, line_start + end)]
    return []
