"""Admin pages that belong to no one feature: the config in force, secrets masked. A feature's own
admin routes live in its package (``telemetry/admin.py``, ``routing/admin.py``, …); one guard,
``gateway.access.admin_guard``, stands in front of every ``/admin`` path.
"""
