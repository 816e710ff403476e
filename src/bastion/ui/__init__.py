"""The web dashboards served under `/ui/`: static assets (plain HTML, CSS and JavaScript
modules, no build step and no external origin) and the server-side view builders behind
`/v1/dashboards/…` (`views`), which aggregate what the services already know.

Sits directly below `bastion.api` (whose `routes/ui.py` serves both) and above
`bastion.platform`; `assets` imports nothing from Bastion.
"""
