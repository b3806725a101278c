"""Passwords in configuration formats detect-secrets' keyword plugin does not parse: XML elements
and named values (Maven, Jenkins, .NET, Hibernate), WordPress's `define()`, PHP config arrays,
SQL's `IDENTIFIED BY`, PowerShell.

The held-out set (`tests/data/guard/heldout/config-passwords.jsonl`, committed before the rules:
7/20 covered, 0/20 benign flagged): 20 such passwords and 20 templated, empty or placeholder
values. With the rules: 20/20 and 0/20. Then, from probes of everyday code the set's benign half
does not hold (Laravel's validation rules and casts, translations, classes, booleans, numbers
under a key named so), a value must hold a digit or a symbol and be none of those: the set's
figures did not move.
"""

from __future__ import annotations

import pytest
from heldout import kinds_and_values, values_covered  # pytest puts this folder on sys.path

from inferpool.guard import Screener
from inferpool.guard.policy import default_config

SCREENER = Screener(default_config())
PASSWORD = "Tz!P8LZI!AFxAS"


def test_the_held_out_passwords_are_covered_and_the_templates_are_not_flagged() -> None:
    assert values_covered("config-passwords", "secrets", SCREENER) == (20, 0)


@pytest.mark.parametrize(
    ("template", "kind"),
    [
        ("<servers><server><id>repo</id><password>{}</password></server></servers>", "config_secret"),
        ("<PrivateKeyPassword>{}</PrivateKeyPassword>", "config_secret"),
        ('<add key="ClientSecret" value="{}" />', "config_secret"),
        ('<property name="hibernate.connection.password">{}</property>', "config_secret"),
        ('<setting name="SmtpPassword" serializeAs="String"><value>{}</value></setting>', "config_secret"),
        ("define( 'DB_PASSWORD', '{}' );", "config_secret"),
        ("'password' => '{}',", "config_secret"),
        ('"password" => "{}",', "config_secret"),
        ("<smtp_pass>{}</smtp_pass>", "config_secret"),
        ("$config['smtp_pass'] = '{}';", "config_secret"),
        ("CREATE USER 'app'@'%' IDENTIFIED BY '{}';", "sql_password"),
        ("$pw = ConvertTo-SecureString '{}' -AsPlainText -Force", "powershell_secret"),
        ("Set-Variable -Name DbPassword -Value '{}'", "powershell_secret"),
    ],
)
def test_the_value_is_found_alone(template: str, kind: str) -> None:
    text = template.format(PASSWORD)
    assert (kind, PASSWORD) in kinds_and_values(SCREENER, text)


@pytest.mark.parametrize(
    "text",
    [
        "'password' => 'required|string|min:8|confirmed',",  # Laravel validation
        "'password' => 'hashed',",  # Laravel cast
        "'password' => 'Passwort',",  # a translation file
        "'pass' => App\\Rules\\Password::class,",
        "<password>true</password>",
        '<add key="PasswordMinLength" value="12" />',
        '<entry key="password.hash.iterations">310000</entry>',
        "<PasswordExpiry>90d</PasswordExpiry>",
        '<add key="SecretsPath" value="/etc/secrets" />',
        '<add key="ApiSecret" value="%API_SECRET%" />',  # a config transform's token
        "<password>$(NexusPassword)</password>",  # MSBuild, Azure Pipelines
        "<password>#{Nexus.Password}</password>",  # Octopus Deploy
        "<password>${env.NEXUS_PASSWORD}</password>",
        "define('AUTH_KEY', 'put your unique phrase here');",  # WordPress's sample
    ],
)
def test_what_such_a_key_holds_that_is_no_secret_is_not_flagged(text: str) -> None:
    assert kinds_and_values(SCREENER, text) == []
