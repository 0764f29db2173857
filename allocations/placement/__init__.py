"""Choosing a host and GPU(s) for a desktop.

``engine/`` is the policy code (plain data in, a decision out, no ORM); ``fleet`` runs it on the
fleet as the database has it, for the request service, with ``shapes`` turning templates, the
catalog and the learned demand into the engine's terms; ``replay`` replays the openb trace through
the engine and ``replay_db`` the same through the request service (``manage.py replay_trace``).
"""
