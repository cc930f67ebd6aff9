"""Redshift Spectra's domain library: jobs, tenants, the SQL guard, and small ports around each AWS dependency.

Every Lambda function is a thin handler over one function of this package. Nothing here reads the environment or
creates a client at import time: settings come from :func:`spectra.settings.get_settings`, clients from
:func:`spectra.ports.get_ports`, and every port takes its client as a parameter.
"""
