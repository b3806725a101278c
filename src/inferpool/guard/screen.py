"""Running a GuardConfig over text: findings, the strongest action, and the redacted text.

Block beats redact beats log. The external hook runs after the built-in checks (so a
blocked prompt never leaves the gateway) and has its own timeout and failure policy.
"""

from __future__ import annotations

import asyncio
import logging
from bisect import bisect_left
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import accumulate

import aiohttp

from inferpool.guard.denylist import compile_terms, find_terms
from inferpool.guard.disguise import Edited, decoded_findings, hidden
from inferpool.guard.findings import Finding
from inferpool.guard.policy import Action, CheckConfig, GuardConfig, HookConfig, Stage
from inferpool.guard.prescan import SHORTEST_NUMBER_CANDIDATE, Prescan, Prescanner, Triggers

log = logging.getLogger(__name__)

_RANK = {Action.LOG: 0, Action.REDACT: 1, Action.BLOCK: 2}
# From this many characters a text is screened in a worker thread, not on the event loop: a
# 100 KB prompt takes ≈3 ms, one made to be costly up to ≈80 ms, and a body may be 16 MiB; in a
# thread the loop still gets the interpreter every switch interval (5 ms), so the other
# requests' streams keep flowing. Below it the hand-off (≈60 µs with uvloop) would cost more
# than it saves.
OFFLOAD_CHARS = 64 * 1024
# Verdicts kept for texts that recur verbatim across requests (RecentVerdicts): at most this many
# texts, and characters, per policy
RECENT_TEXTS = 4096
RECENT_CHARS = 8 * 1024 * 1024


@dataclass
class Verdict:
    """The outcome of screening one text; `action` is None when nothing was found."""

    text: str
    action: Action | None = None
    findings: list[tuple[Finding, Action]] = field(default_factory=list)
    reason: str = ""

    @property
    def blocked(self) -> bool:
        return self.action is Action.BLOCK

    def add(self, finding: Finding, action: Action) -> None:
        self.findings.append((finding, action))
        if self.action is None or _RANK[action] > _RANK[self.action]:
            self.action = action

    def summary(self) -> str:
        kinds = sorted({f"{f.check}:{f.kind}" for f, _ in self.findings})
        return ", ".join(kinds) or self.reason

    def copy(self) -> Verdict:
        """A verdict of its own (a kept one is given out again; the hook adds to what it gets)."""
        return Verdict(self.text, self.action, list(self.findings), self.reason)


def _short_without_redaction(kinds: tuple[str, ...], text: str) -> bool:
    """The common streamed token, which only PII could redact: too short for a digit run or an
    ID shape, and without an '@' or the full-width '＠' (a disguise, read through as one)."""
    return (
        kinds == ("pii",)
        and len(text) < SHORTEST_NUMBER_CANDIDATE
        and "@" not in text
        and "\uff20" not in text
    )


def redact(text: str, findings: list[Finding]) -> str:
    out, pos = [], 0
    for f in sorted(findings, key=lambda f: f.start):
        if f.start < pos:
            continue
        out.append(text[pos : f.start])
        out.append(f"[REDACTED:{f.kind}]")
        pos = f.end
    out.append(text[pos:])
    return "".join(out)


# A detector of one check: (text, its pre-scan, a user turn right after a system prompt?, a
# request's tool definitions?) -> findings
Detector = Callable[[str, Prescan, bool, bool], list[Finding]]


def _detector(check: CheckConfig) -> Detector:
    """The compiled detector of one check, holding that check's own settings.

    Each detector's module is imported here, when a policy first uses it: with its libraries
    (detect-secrets, libphonenumber, python-stdnum) they were ≈0.3 s of every data plane's
    start, and a data plane without a GuardPolicy never needs them.
    """
    if check.check == "pii":
        from inferpool.guard.pii import PiiScanner

        pii = PiiScanner(check.pii_types, check.phone_regions)

        def find_pii(text: str, scan: Prescan, _after_system: bool, _definitions: bool) -> list[Finding]:
            found = pii.find(
                text,
                number_spans=scan.number_spans,
                alnum_ids=scan.alnum_ids,
                email=scan.email,
                lowered=scan.lowered,
                keywords=scan.keywords,
                chars=scan.chars,
                odd_digits=scan.odd_digits,
            )
            # (an invisible character is one of the disguises the pass reports; an address as
            # jane%40example.com, personal data in base64, "jane [at] gmail [dot] com")
            found = _read_through_readings(text, found, pii.find, scan)
            if scan.decoded:
                found += decoded_findings(text, scan.decoded, found, pii.find)
            if scan.obfuscated:
                found += decoded_findings(text, scan.obfuscated, found, pii.find)
            return found

        return find_pii
    if check.check == "secrets":
        from inferpool.guard.credentials import SecretScanner

        secrets = SecretScanner(check.base64_entropy_limit, check.hex_entropy_limit)

        def find_secrets(text: str, scan: Prescan, _after_system: bool, _definitions: bool) -> list[Finding]:
            found = secrets.find(text, scan.lowered, scan.secret_hints, scan.long_tokens, scan.decoded)
            return _read_through_readings(text, found, secrets.find, scan)

        return find_secrets
    if check.check == "injection":
        from inferpool.guard.injection import InjectionScorer
        from inferpool.guard.poisoning import PoisoningScorer, quoted_in_a_warning

        scorer = InjectionScorer(check.threshold)
        poisoning = PoisoningScorer(check.threshold if check.tool_threshold is None else check.tool_threshold)

        def find_injection(text: str, scan: Prescan, after_system: bool, definitions: bool) -> list[Finding]:
            found = (
                scorer.find(
                    text,
                    after_system,
                    scan.lowered,
                    scan.injection_hits,
                    scan.exact,
                    scan.chars,
                    scan.spaced,
                    scan.disguised,
                    scan.spelled_found,
                    scan.plain if scan.disguised else None,
                    scan.ciphers,
                    scan.decoded,
                    scan.unescaped,
                    scan.foreign,
                )
                if scan.injection
                else []
            )
            if definitions and found:  # (a tool that warns about injections quotes one)
                found = [f for f in found if not quoted_in_a_warning(text, f.start, f.end)]
            # (tool definitions are also read for what a poisoned tool asks of the model, through
            # the disguises the other checks read through: an order in Unicode tag characters,
            # which a model reads and a reviewer does not see)
            if definitions and not found:
                return _read_through_readings(text, poisoning.find(text), poisoning.find, scan)
            return found

        return find_injection
    if check.check == "denylist":
        terms = compile_terms(check.terms)
        return lambda text, _scan, _after_system, _definitions: find_terms(text, terms)
    raise ValueError(f"unknown guard check {check.check!r}")


def _read_through(
    text: str, found: list[Finding], find: Callable[[str], list[Finding]], plain: Edited
) -> list[Finding]:
    """`found` (a detector's findings in a text holding invisible characters or other disguises),
    and what `find` finds in it undisguised (a key or an address split by a zero-width space, or
    written in full-width letters or with a Cyrillic lookalike, is one to whoever copies or reads
    it) where the text as written had nothing, pointing into the text. A finding
    as written that holds an invisible character is kept only where the text without them has
    one too: the character may be all that made it one (`password = ge<U+200B>tpass.getpass()`
    is a call to whoever reads it, and was a literal to the keyword detector). `plain`: the
    text undisguised."""
    through = [Finding(f.check, f.kind, *plain.source_span(f.start, f.end)) for f in find(plain.text)]
    overlaps_through = _overlap_test(through)
    kept = [f for f in found if not hidden(text[f.start : f.end]) or overlaps_through(f)]
    overlaps_kept = _overlap_test(kept)
    return kept + [f for f in through if not overlaps_kept(f)]


def _read_through_readings(
    text: str, found: list[Finding], find: Callable[[str], list[Finding]], scan: Prescan
) -> list[Finding]:
    """`found` and what `find` finds in each other reading of the text the pre-scan says it has:
    undisguised, and its lines with escapes decoded (`_read_through` each)."""
    if scan.disguised:
        found = _read_through(text, found, find, scan.plain)
    if scan.unescaped is not None:  # (a key in a URL's query, percent-encoded)
        found = _read_through(text, found, find, scan.unescaped)
    return found


def _overlap_test(findings: list[Finding]) -> Callable[[Finding], bool]:
    """Whether a finding shares a character with one of `findings` (a bisection each)."""
    spans = sorted((f.start, f.end) for f in findings)
    starts = [start for start, _end in spans]
    reach = list(accumulate((end for _start, end in spans), max))  # the furthest end so far

    def overlaps(finding: Finding) -> bool:
        before = bisect_left(starts, finding.end)  # the spans that start before it ends
        return before > 0 and reach[before - 1] > finding.start

    return overlaps


def _secret_hints() -> tuple[str, ...]:
    from inferpool.guard.credentials import SECRET_HINTS  # see _detector: imported when used

    return SECRET_HINTS


def _id_keywords() -> frozenset[str]:
    from inferpool.guard.pii import ID_KEYWORDS  # see _detector: imported when used

    return ID_KEYWORDS


@dataclass(frozen=True)
class FixedTriggers:
    """A pre-scan's answers given in advance (prescan.Triggers): what a policy does with them."""

    numbers: bool = False
    alnum_ids: bool = False
    email: bool = False
    secret_hints: bool = False
    long_tokens: bool = False
    injection: bool = False
    disguised: bool = False
    escaped: bool = False
    obfuscated_email: bool = False


@dataclass(frozen=True)
class AnswerChecks:
    """What a policy's checks of answers are, as a streamed answer's per-event questions need
    them (stream.StreamedText): known per policy, not asked per stream."""

    blocking: frozenset[str]  # the kinds of the checks that block answers
    hooked: bool  # a hook (webhook) screens answers
    fires_untriggered: bool  # they fire on a text without any trigger (a deny-list's do)
    injection_counts: bool  # an injection word counts (the default policy screens answers for none)
    obfuscated_counts: bool  # an obfuscated address counts (a PII check screens answers)
    # an escape counts: PII and secrets read escaped text decoded, and the injection check reads
    # a text holding one
    escapes_count: bool


# What a kept verdict is for: the text (or a request's tool definitions as sent, `note_passed`),
# the stage, and how it was screened (after a system prompt? as tool definitions?)
_RecentKey = tuple[str | bytes, Stage, bool, bool]


class RecentVerdicts:
    """The built-in checks' verdicts on texts that recur verbatim across requests: each turn of a
    conversation sends the turns before it again, an agent its tool definitions (screened anew,
    turn 20 of a chat read 20 turns of history; the checks are deterministic, so their verdict
    on the same text is the same). The least recently used go past RECENT_TEXTS texts or
    RECENT_CHARS characters; a text over a quarter of that is not kept."""

    def __init__(self, texts: int = RECENT_TEXTS, chars: int = RECENT_CHARS) -> None:
        self._kept: dict[_RecentKey, tuple[Verdict, int]] = {}  # (the verdict, the characters it holds)
        self._chars = 0
        self._texts_max, self._chars_max = texts, chars

    def __len__(self) -> int:
        return len(self._kept)

    @property
    def chars(self) -> int:
        return self._chars

    def get(self, key: _RecentKey) -> Verdict | None:
        """A copy of the verdict kept for `key` (the caller and the hook may change it), now the
        most recently used; None if none is."""
        entry = self._kept.pop(key, None)
        if entry is None:
            return None
        self._kept[key] = entry
        return entry[0].copy()

    def keep(self, key: _RecentKey, verdict: Verdict) -> None:
        # (the text, and its redaction when it has one)
        size = len(key[0]) + (len(verdict.text) if verdict.text is not key[0] else 0)
        if size > self._chars_max // 4 or key in self._kept:  # (two requests screened it at once)
            return
        self._kept[key] = (verdict.copy(), size)
        self._chars += size
        while len(self._kept) > self._texts_max or self._chars > self._chars_max:
            oldest = next(iter(self._kept))
            self._chars -= self._kept.pop(oldest)[1]


class Screener:
    """One GuardConfig, compiled once; screen() for built-in checks, screen_async() adds the hook."""

    def __init__(self, config: GuardConfig, session: aiohttp.ClientSession | None = None) -> None:
        self.config = config
        self._detectors = [(check, _detector(check)) for check in config.checks]
        kinds = {c.check for c in config.checks}
        injection, hints = "injection" in kinds, _secret_hints() if "secrets" in kinds else ()
        self._prescanner = Prescanner(injection, hints)  # triggers only (the stream's per-event scans)
        # Where PII's ID rules run, their keywords are looked for in the same pass
        with_keywords = Prescanner(injection, hints, _id_keywords()) if "pii" in kinds else self._prescanner
        self._session = session
        self.recent = RecentVerdicts()
        # The hook failure last logged at warning, until the hook answers again: an outage is
        # one warning, not one per request (repeats go to debug), as the reflector does it.
        self._hook_failure: str | None = None
        # The kinds of the checks of each stage, and of each stage and action.
        self._kinds: dict[tuple[Stage, Action | None], tuple[str, ...]] = {
            (stage, action): tuple(
                c.check for c in config.checks if stage in c.stages and action in (None, c.action)
            )
            for stage in Stage
            for action in (None, *Action)
        }
        # The same for redacting checks, by stage alone: each streamed event may ask (a lookup by
        # a (stage, action) pair hashes two enums, ≈0.6 µs on a slow machine).
        self._redacting = {stage: self._kinds[stage, Action.REDACT] for stage in Stage}
        # The pre-scan for running the checks of a stage (and action): with the ID keywords only
        # when a PII check is among them (a blocking-only screen has no use for them).
        self._scanners = {
            key: with_keywords if "pii" in checks else self._prescanner for key, checks in self._kinds.items()
        }
        injection_counts = self.triggered(FixedTriggers(injection=True), Stage.RESPONSE)
        self.answer_checks = AnswerChecks(
            blocking=frozenset(
                c.check for c in config.checks if Stage.RESPONSE in c.stages and c.action is Action.BLOCK
            ),
            hooked=config.hook is not None and Stage.RESPONSE in config.hook.stages,
            fires_untriggered=self.triggered(FixedTriggers(), Stage.RESPONSE),
            injection_counts=injection_counts,
            obfuscated_counts=self.triggered(FixedTriggers(obfuscated_email=True), Stage.RESPONSE),
            escapes_count=injection_counts or self.triggered(FixedTriggers(escaped=True), Stage.RESPONSE),
        )

    @property
    def prescanner(self) -> Prescanner:
        return self._prescanner

    def may_find(self, text: str, stage: Stage) -> bool:
        """False when the pre-scan alone rules out every check of `stage` (and no hook screens it)."""
        if self.config.hook is not None and stage in self.config.hook.stages:
            return True
        return self.fires(text, stage)

    def fires(self, text: str, stage: Stage) -> bool:
        """`may_find` for the built-in checks alone: whether the pre-scan of `text` fires."""
        return self.triggered(self._prescanner.scan(text), stage)

    def triggered(self, scan: Triggers, stage: Stage, action: Action | None = None) -> bool:
        """Whether a pre-scan's triggers let any check of `stage` (with `action`, if given) find
        something: False means each of those detectors finds nothing in the scanned text."""
        kinds = self._kinds[stage, action]
        # The triggers a scan has at hand (trigger words, '@') before those that need a search.
        # A disguised text may hide a key or a number from the triggers as written (secrets and
        # PII read it undisguised too: `_read_through`).
        for kind in kinds:
            if kind == "denylist":
                return True
            if kind == "pii" and (scan.email or scan.disguised):
                return True
            if kind == "secrets" and (scan.secret_hints or scan.disguised):
                return True
            if kind == "injection" and scan.injection:
                return True
        read_long_tokens = False  # (asked once: a stream's tail searches for them)
        for kind in kinds:
            if kind == "pii" and (scan.numbers or scan.alnum_ids or scan.obfuscated_email):
                return True
            if kind in ("pii", "secrets") and scan.escaped:  # (escapes may hide an @ or a key)
                return True
            read_long_tokens = read_long_tokens or kind in ("pii", "secrets")  # (PII: base64 may hide some)
        return read_long_tokens and bool(scan.long_tokens)

    def blocks(self, text: str, stage: Stage) -> bool:
        """Whether `screen(text, stage)` blocks, running only the checks whose action is block
        (a verdict blocks exactly when one of them finds something); the hook is not asked."""
        return next(self._found(text, stage, Action.BLOCK), None) is not None

    def redacting(self, stage: Stage) -> tuple[str, ...]:
        """The kinds of the checks that redact at `stage`."""
        return self._redacting[stage]

    def redactions(self, text: str, stage: Stage) -> list[Finding]:
        """`findings(text, stage, Action.REDACT)`, with no detector run when the pre-scan's
        triggers rule every redacting check out (one pre-scan; a short token without an '@'
        none at all, `_short_without_redaction`)."""
        kinds = self._redacting[stage]
        if not kinds or _short_without_redaction(kinds, text):
            return []
        scan = self._scanners[stage, Action.REDACT].scan(text)
        if not self.triggered(scan, stage, Action.REDACT):
            return []
        return list(self._found(text, stage, Action.REDACT, scan))

    def findings(self, text: str, stage: Stage, action: Action) -> list[Finding]:
        """What the checks of `stage` that take `action` find in `text` (screen() runs them all)."""
        return list(self._found(text, stage, action))

    def _found(
        self, text: str, stage: Stage, action: Action, scan: Prescan | None = None
    ) -> Iterator[Finding]:
        """The findings of those checks, one detector after another (lazily: `blocks` stops at one);
        `scan`: the text's pre-scan for them, if made already."""
        if scan is None:
            scan = self._scanners[stage, action].scan(text)
        for check, detect in self._detectors:
            if stage in check.stages and check.action is action:
                yield from detect(text, scan, False, False)

    def screen(
        self, text: str, stage: Stage, after_system: bool = False, definitions: bool = False
    ) -> Verdict:
        """`after_system`: the text is the user turn right after a system prompt (injection weighs
        it); `definitions`: it is a request's tool definitions (injection reads them for tool
        poisoning too)."""
        verdict = Verdict(text)
        to_redact: list[Finding] = []
        scan = self._scanners[stage, None].scan(text)
        for check, detect in self._detectors:
            if stage not in check.stages:
                continue
            for finding in detect(text, scan, after_system, definitions):
                verdict.add(finding, check.action)
                if check.action is Action.REDACT:
                    to_redact.append(finding)
        if verdict.blocked:
            verdict.reason = f"{stage.value} blocked by guard policy {self.config.name}: {verdict.summary()}"
        elif to_redact:
            verdict.text = redact(text, to_redact)
        if verdict.findings:
            log.info("guard %s %s: %s (%s)", self.config.name, stage.value, verdict.summary(), verdict.action)
        return verdict

    async def screen_async(
        self,
        text: str,
        stage: Stage,
        model: str = "",
        after_system: bool = False,
        definitions: bool = False,
        recurring: bool = False,
    ) -> Verdict:
        """`screen` (in a worker thread for a text of OFFLOAD_CHARS or more), then the hook.
        `definitions`: a request's tool definitions. `recurring`: a text later requests may send
        again (a prompt's turns, its tool definitions): the built-in checks' verdict is kept
        (`recent`) and given again; the hook is still asked each time."""
        key = (text, stage, after_system, definitions)
        kept = self.recent.get(key) if recurring else None
        if kept is not None:
            verdict = kept
        elif len(text) >= OFFLOAD_CHARS:
            verdict = await asyncio.to_thread(self.screen, text, stage, after_system, definitions)
        else:
            verdict = self.screen(text, stage, after_system, definitions)
        if recurring and kept is None:
            self.recent.keep(key, verdict)
        hook = self.config.hook
        if verdict.blocked or hook is None or stage not in hook.stages:
            return verdict
        return await self._hook(hook, verdict, stage, model)

    def passed_before(self, definitions: bytes, stage: Stage) -> bool:
        """Whether a request's tool definitions, as sent (`note_passed`), passed with nothing found."""
        kept = self.recent.get((definitions, stage, False, True))
        return kept is not None and not kept.findings

    def note_passed(self, definitions: bytes, stage: Stage) -> None:
        """Note that a request's tool definitions, as sent, passed `stage` with nothing found."""
        self.recent.keep((definitions, stage, False, True), Verdict(""))

    def _hook_failed(self, hook: HookConfig, stage: Stage, exc: BaseException) -> None:
        """The gateway's log keeps the whole failure; a repeat of the last one goes to debug."""
        detail = (
            "timed out" if isinstance(exc, TimeoutError) else f"failed ({str(exc) or type(exc).__name__})"
        )
        repeated = detail == self._hook_failure
        self._hook_failure = detail
        log.log(
            logging.DEBUG if repeated else logging.WARNING,
            "guard %s %s: screening service %s %s; %s%s",
            self.config.name,
            stage.value,
            hook.url,
            detail,
            "letting the text through (FailOpen)" if hook.fail_open else "blocking it (FailClosed)",
            "" if repeated else " (repeats are logged at debug level until it answers again)",
        )

    async def _hook(self, hook: HookConfig, verdict: Verdict, stage: Stage, model: str) -> Verdict:
        payload = {"stage": stage.value, "text": verdict.text, "model": model, "policy": self.config.name}
        session = self._session or aiohttp.ClientSession()
        try:
            async with session.post(
                hook.url, json=payload, timeout=aiohttp.ClientTimeout(total=hook.timeout_s)
            ) as resp:
                if resp.status != 200:
                    raise ValueError(f"HTTP {resp.status}")
                answer = await resp.json(content_type=None)
            if not isinstance(answer, dict):
                raise ValueError("answer is not a JSON object")
        except (TimeoutError, aiohttp.ClientError, ValueError) as exc:
            self._hook_failed(hook, stage, exc)
            if hook.fail_open:
                return verdict
            # The client sees what happened, in words: never the exception's text, which
            # names the screening service's address.
            if isinstance(exc, TimeoutError):
                what = "timed out"
            elif isinstance(exc, aiohttp.ClientConnectionError):
                what = "could not be reached"
            else:
                what = "failed"
            verdict.add(Finding("hook", "unavailable", 0, 0), Action.BLOCK)
            verdict.reason = (
                f"{stage.value} blocked: the screening service {what} and the policy fails closed"
            )
            return verdict
        finally:
            if self._session is None:
                await session.close()
        if self._hook_failure is not None:
            log.info("guard %s: screening service %s answers again", self.config.name, hook.url)
            self._hook_failure = None
        action = str(answer.get("action", "allow")).lower()
        reason = str(answer.get("reason") or "external screening")
        if action == "block":
            verdict.add(Finding("hook", reason, 0, 0), Action.BLOCK)
            verdict.reason = f"{stage.value} blocked by the screening service: {reason}"
        elif action == "redact" and isinstance(answer.get("text"), str):
            verdict.add(Finding("hook", reason, 0, 0), Action.REDACT)
            verdict.text = answer["text"]
        return verdict
