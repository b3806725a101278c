"""Passwords on pasted command lines (docs/security.md). The held-out set
(`tests/data/guard/heldout/command-line.jsonl`: 20 lines with a password given to curl, wget,
docker login, redis-cli, smbclient, htpasswd, mongosh, psql, ldapsearch, az, ftp, rabbitmqctl,
openssl, keytool, sqlcmd, a git URL and net use; 20 benign lines with placeholders, variables,
prompting flags, ports and documented example values) was written and committed before the
rules: the secrets check found 2/20 and 0/20 before, 18/20 and 0/20 after. The two it missed:
a password typed at ftp's own prompt (still), and one with a '#' in a URL, found since URL
passwords are read as RFC 3986 writes them and with a '#' (test_escaped.py)."""

from __future__ import annotations

import pytest
from heldout import found_by_label  # pytest puts this folder on sys.path

from inferpool.guard import Screener
from inferpool.guard.credentials import SecretScanner
from inferpool.guard.policy import default_config

SCANNER = SecretScanner()


def test_the_held_out_set() -> None:
    assert found_by_label("command-line", "secrets", Screener(default_config())) == {
        "harmful": 19,
        "benign": 0,
    }


@pytest.mark.parametrize(
    ("line", "password"),
    [
        ("curl -sS -u 'ci:Xk29vL!pq7' https://example.org", "Xk29vL!pq7"),
        ("docker login --password=Xk29vLpq77 registry.example.org", "Xk29vLpq77"),
        ("redis-cli -h cache -a Xk29vLpq77 info", "Xk29vLpq77"),
        ("keytool -list -keystore a.jks -storepass Xk29vLpq77", "Xk29vLpq77"),
    ],
)
def test_the_finding_is_the_password(line: str, password: str) -> None:
    (finding,) = [f for f in SCANNER.find(line) if f.kind == "command_line_password"]
    assert line[finding.start : finding.end] == password


def test_a_line_is_read_on_its_own_and_with_mysql_the_whole_text() -> None:
    """The tools' rules read the lines holding the tool's name; with mysql, mariadb or sshpass
    in the text the whole text is read, as before them (a command one word per line)."""
    assert not [
        f for f in SCANNER.find("curl\n-u deploy:Zq8rT2mW9vX https://x") if f.kind == "command_line_password"
    ]
    assert [
        f for f in SCANNER.find("sshpass\n-p\n'W1nter-is-c0ming'\nssh") if f.kind == "command_line_password"
    ]


def test_mongosh_short_password_flag() -> None:
    """`-p <password>` (2026-12-07, thirty-first session); `-p` alone or before another flag
    asks for it, as MongoDB's docs write it."""
    line = "mongosh mongodb://db.internal -u ci -p Mg7kP2qW9z --tls"
    (finding,) = SCANNER.find(line)
    assert line[finding.start : finding.end] == "Mg7kP2qW9z"
    for prompting in (
        "mongosh -u admin -p --authenticationDatabase admin",
        "mongosh -u admin -p",
        "mongosh --port 27017 -u app -p $MONGO_PW",
        "mongosh -u admin -p password",
    ):
        assert SCANNER.find(prompting) == [], prompting
