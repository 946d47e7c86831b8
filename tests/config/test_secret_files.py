"""`*_file` secrets (#15): any secret key may be given as KEY_file, read from a file (Docker and
Kubernetes secrets); problems name FILE:LINE and the path, never the secret."""

from __future__ import annotations

import pytest
import structlog

from bridge import logs
from bridge.config.loader import load_config
from bridge.config.secret_files import secret_keys
from bridge.errors import ConfigError

HOOK = "whsec_ZmlsZS1zZWNyZXQtY2FuYXJ5LTk4NzY1"  # base64 of "file-secret-canary-98765"
CONFIG = """\
[server]
admin_token_file = "secrets/admin"

[providers.podero]
kind = "podero"
org_id = "o"
client_id_file = "secrets/client_id"
client_secret_file = "/abs/dir/is/replaced"

[providers.ws]
kind = "wattshift"
api_key_file = "secrets/ws"

[channels.partner]
kind = "webhook"
url = "https://hooks.partner.example/h"
secret_file = "secrets/hook"
previous_secret_file = "secrets/hook_old"

[smtp]
password_file = "secrets/smtp"
"""
VALUES = {
    "admin": "admin-token-canary-1234\n",
    "client_id": "client-id-canary",
    "client_secret": "client-secret-canary-5678\r\n",
    "ws": "ws-key-canary",
    "hook": HOOK + "\n",
    "hook_old": "whsec_b2xkLWZpbGUtc2VjcmV0LWNhbmFyeQ==",
    "smtp": "smtp-password-canary",
}
WS, SMTP = "providers.ws.api_key_file", "smtp.password_file"


def write(tmp_path, text: str = CONFIG, values: dict[str, str] = VALUES) -> str:
    (tmp_path / "secrets").mkdir(exist_ok=True)
    for name, value in values.items():
        (tmp_path / "secrets" / name).write_text(value, newline="")
    text = text.replace("/abs/dir/is/replaced", str(tmp_path / "secrets" / "client_secret"))
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def test_every_secret_key_of_the_models_has_a_file_form():
    expected = {"admin_token", "client_id", "client_secret", "username", "password", "api_key", "secret"}
    # The other channel kinds' secrets too: an Apprise URL, an Alertmanager bearer token.
    assert expected | {"previous_secret", "url", "bearer_token"} <= secret_keys()


def test_secrets_are_read_from_files_relative_to_the_config_without_the_trailing_newline(tmp_path):
    config = load_config(write(tmp_path))
    assert config.server.admin_token is not None
    assert config.server.admin_token.get_secret_value() == "admin-token-canary-1234"
    podero = config.providers["podero"]
    assert podero.kind == "podero"
    assert podero.client_id is not None
    assert podero.client_id.get_secret_value() == "client-id-canary"
    assert podero.client_secret is not None
    assert podero.client_secret.get_secret_value() == "client-secret-canary-5678"  # absolute path
    ws = config.providers["ws"]
    assert ws.kind == "wattshift"
    assert ws.api_key.get_secret_value() == "ws-key-canary"
    partner = config.channels["partner"]
    assert partner.kind == "webhook"
    assert partner.secret.get_secret_value() == HOOK
    assert partner.previous_secret is not None
    assert config.smtp.password is not None
    assert config.smtp.password.get_secret_value() == "smtp-password-canary"
    assert {"smtp-password-canary", HOOK} <= set(config.secret_values())  # the log scrubber gets them


def test_secrets_read_from_files_are_scrubbed_from_logs(tmp_path, json_logs):
    config = load_config(write(tmp_path))
    logs.register_secrets(config.secret_values())
    structlog.get_logger("test").warning("echo", value="admin-token-canary-1234 and smtp-password-canary")
    out = json_logs.getvalue()
    assert '"event":"echo"' in out.replace(" ", "")
    assert "admin-token-canary-1234" not in out
    assert "smtp-password-canary" not in out


@pytest.mark.parametrize(
    ("edit", "line", "key", "message"),
    [
        (("secrets/ws", "secrets/gone"), 12, WS, "cannot read 'secrets/gone': No such file or directory"),
        (("secrets/ws", "secrets"), 12, WS, "cannot read 'secrets': Is a directory"),
        (("secrets/ws", "secrets/empty"), 12, WS, "'secrets/empty' is empty"),
        (('api_key_file = "secrets/ws"', 'api_key_file = "secrets/ws"\napi_key = "inline"'), 12, WS,
         "set either api_key or api_key_file, not both"),
        (('password_file = "secrets/smtp"', "password_file = 3"), 21, SMTP, "expected the path of a file"),
    ],
)  # fmt: skip
def test_a_bad_secret_file_is_named_at_its_line_with_its_path_and_never_a_value(
    tmp_path, edit, line, key, message
):
    path = write(tmp_path, CONFIG.replace(*edit), {**VALUES, "empty": "\n"})
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert f"{path}:{line}: {key}: {message}" in [str(p) for p in raised.value.problems]
    text = str(raised.value)
    for value in VALUES.values():
        assert value.strip() not in text


def test_an_unknown_file_key_is_still_an_unknown_key(tmp_path):
    path = write(tmp_path, CONFIG.replace('org_id = "o"', 'org_id = "o"\norg_id_file = "secrets/ws"'))
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    assert any("providers.podero.org_id_file" in str(p) for p in raised.value.problems)
