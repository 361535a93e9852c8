"""Alerts: the alert model, rules from state changes to alerts, grouping,
sinks and templates. Filled in by the alerts issue."""
