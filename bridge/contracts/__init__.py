"""Payload contracts (issue #15): what partners code against, as pydantic models and JSON Schemas.

`envelope` holds the models, `schemas` turns them into one JSON Schema per event type, `samples`
builds a realistic event per source, and `template_check` renders body templates against them.
"""
