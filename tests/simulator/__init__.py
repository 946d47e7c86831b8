"""Tests of the provider simulator and the webhook/SMTP sinks (a package: avoids basename clashes)."""
