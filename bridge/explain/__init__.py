""" "Why (not)?" (#14): evaluation traces, what they say about a rule on a resource, and rule-file tests."""
