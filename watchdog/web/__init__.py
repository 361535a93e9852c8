"""The status page: what the daemon serves at `/` for people (the
customer-care agent who must know in five seconds what is down and why),
`?view=public` for customers, and `/api/v1/summary.json` in Atlassian
Statuspage's shape for the widgets that read it.

`model` turns the API process's snapshot and the incident history into
plain data, `layout` draws the topology as a layered SVG, `routes` serves
them; all of it runs in the API process, never in the daemon's loop."""
