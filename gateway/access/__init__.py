"""Who may do what and how much: virtual keys, tenant policy, limits, the admin and browser guards,
and the client's address behind proxies.
"""
