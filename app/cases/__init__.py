"""Cases: consent-first intake, the case list and page, danger reports, survivor rights
(export, erasure). Domain in service.py and danger.py; pages (blueprint "intake") in views.py."""
