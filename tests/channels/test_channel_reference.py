"""The README's channel reference stays true: each kind has an example there, and each example's
`[channels.…]` tables load as a config (its rule parts load as rules against those channels)."""

from __future__ import annotations

import re

from bridge.config.loader import load_config
from bridge.rules.loader import load_rules

ENV = {
    "PARTNER_WEBHOOK_SECRET": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "MQTT_PASSWORD": "mqtt-password",
    "TELEGRAM_APPRISE_URL": "tgram://123456789:ABCdefGhIJKlmnoPQRsTUVwxyZ/987654",
}


def test_every_channel_kind_has_a_loading_example_in_the_readme(repo_root, tmp_path):
    readme = (repo_root / "README.md").read_text()
    section = readme.split("## Channel reference", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```toml\n(.*?)```", section, flags=re.S)
    kinds: set[str] = set()
    for i, block in enumerate(blocks):
        config_part, _, rule_part = block.partition("# in a rule file\n")
        path = tmp_path / f"example{i}.toml"
        path.write_text(f'[rules]\npaths = ["rules{i}/*.toml"]\n\n{config_part}')
        config = load_config(path, environ=ENV)
        kinds |= {c.kind for c in config.channels.values()}
        if rule_part:
            (tmp_path / f"rules{i}").mkdir()
            (tmp_path / f"rules{i}" / "example.toml").write_text(rule_part)
            rules = load_rules([f"rules{i}/*.toml"], base_dir=tmp_path, channels=list(config.channels))
            assert rules.rules
    assert kinds == {"webhook", "email", "mqtt", "apprise", "alertmanager"}
