"""Who a job's statement runs as, decided in code at the moment it starts, never left to IAM alone.

The executor asks :func:`identity_for` just before ExecuteStatement. The tenant record is read then, not at submission,
so a tenant deactivated or deleted while its jobs wait in the queue gets none of them started:

- the tenant must exist, be active, and still be the tenant that submitted the job (the same generation: a tenant
  deleted and created again under the same id does not inherit queued jobs; a job of a tenant created before
  generations, none recorded, must not be older than the record), and not have been deactivated since the job was
  queued (:func:`before_reactivation`) → else :class:`TenantInactive`;
- on a provisioned cluster the statement runs as the tenant's ``db_user``, which must start with the tenant prefix
  (``TenantDbUserPrefix``); on Serverless with the tenant's ``secret_arn``, whose secret name must start with the
  tenant secret prefix (``TenantSecretPrefix``) → else :class:`IdentityRefused`. A record naming the admin user, or
  any user outside the prefix, is refused here even where IAM would have let it through;
- a tenant without the kind of identity the warehouse takes → :class:`NoIdentity`. There is no fallback: with neither
  a user nor a secret, the Data API would run the statement as the function role's own database user.

The identity comes from the tenant record, not from the ``db_user`` the job recorded at submission (kept for the
record): an administrator who moves a tenant to another database user moves its queued jobs with it.

What a query job's statement may change is decided at start too (:func:`check_write_grant`): a write the guard let
through at submission does not run once the tenant's write flag is taken away, or the schema it writes is no longer
the tenant's.

The record may be up to ``TENANT_CACHE_SECONDS`` old (spectra/tenant_cache.py, one DynamoDB read fewer per job): a
tenant deactivated, deleted or moved stops starting statements within that time in each executor environment, as
its keys stop working within the authorizer's cache. A record that would refuse the job is read again first, so a
tenant reactivated (or re-created) runs at once.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from spectra.bulk.files import CLOCK_LEEWAY
from spectra.errors import IdentityRefused, NoIdentity, SqlRejected, TenantInactive, WriteRefused
from spectra.jobs import Job
from spectra.ports import Ports
from spectra.settings import Settings
from spectra.sql_guard import check_sql
from spectra.tenant_cache import tenant_record
from spectra.tenants import Tenant
from spectra.warehouse import DatabaseIdentity

logger = logging.getLogger(__name__)


class TenantJob(Protocol):
    """Any job a tenant submitted: a query job (spectra.jobs.Job) or a bulk job (spectra.bulk.models.BulkJob)."""

    tenant_id: str
    tenant_generation: str | None
    created_at: datetime


def identity_for(ports: Ports, job: TenantJob) -> DatabaseIdentity:
    """The database identity the job's statement may run as; raises a subclass of :class:`IdentityRefused`."""
    tenant = tenant_record(ports.tenants, job.tenant_id, max_age=ports.settings.tenant_cache_seconds)
    if not _runs(job, tenant):
        tenant = tenant_record(ports.tenants, job.tenant_id, max_age=0)  # never refuse on a remembered record
    if tenant is None or not tenant.active:
        raise TenantInactive("the job's tenant is inactive or deleted; the job was not run")
    if _predecessors(job, tenant):
        raise TenantInactive("the tenant that submitted the job was deleted; the job was not run")
    if before_reactivation(_queued_at(job), tenant):
        raise TenantInactive(
            "the job was queued before its tenant was deactivated and made active again; the job was not run"
        )
    return tenant_identity(ports.settings, tenant)


def before_reactivation(moment: datetime | None, tenant: Tenant) -> bool:
    """Whether ``moment`` (a job's queuing, a dropped file's write) came before the tenant was last made active again
    (``activated_at``, less :data:`CLOCK_LEEWAY`: it is stamped by the clock of whoever reactivated it, and a file's
    by S3's). Such work was set going while the tenant was inactive, or before it was deactivated, which is how an
    operator stops a leaked key's work (README, "Tenancy and security"): unchecked, a bulk job the key had queued would
    wait in its tenant's line through the deactivation and run once the tenant was active again, as a late drop
    event's file would be loaded (spectra.bulk.drops)."""
    since = tenant.activated_at
    return since is not None and moment is not None and moment < since - CLOCK_LEEWAY


def _queued_at(job: TenantJob) -> datetime:
    """When the job was set going: a bulk ingest job when its upload completed, any other job when it was made."""
    return getattr(job, "queued_at", None) or job.created_at


def check_write_grant(ports: Ports, job: Job) -> None:
    """Refuse (:class:`WriteRefused`) a query job whose statement the tenant's write grant no longer allows.

    The guard checked the statement at submission against the grant of that moment, which the job keeps
    (``write_grant``). A grant unchanged or wider costs nothing here; one that shrank since (``allow_writes`` taken
    away, an owned schema given up) has the guard check the statement again against the record, so a read still
    runs and a write into what the tenant no longer owns does not. A job submitted without the write flag passed as
    a read and needs no second look. Call it after :func:`identity_for`, which has just read the record.
    """
    if job.write_grant is None:
        return
    for max_age in (ports.settings.tenant_cache_seconds, 0):  # never refuse on a remembered record
        tenant = tenant_record(ports.tenants, job.tenant_id, max_age=max_age)
        if tenant is None or (tenant.allow_writes and set(job.write_grant) <= set(tenant.owned_schemas)):
            return
        try:
            check_sql(
                job.sql,
                max_bytes=ports.settings.max_sql_bytes,
                allow_writes=tenant.allow_writes,
                owned_schemas=tenant.owned_schemas,
            )
            return
        except SqlRejected as exc:
            refusal = exc.message
    raise WriteRefused(f"the tenant's write grant changed after the job was submitted: {refusal}")


def _predecessors(job: TenantJob, tenant: Tenant) -> bool:
    """Whether the job was made for an earlier tenant of the same id (deleted, then created again): another
    generation, or, for a job of a tenant whose record had no generation (created before tenants had them; its jobs
    record none), made before this record was (less :data:`CLOCK_LEEWAY`: the API's clock and the administrator's
    may differ)."""
    if job.tenant_generation:
        return job.tenant_generation != tenant.generation
    return job.created_at < tenant.created_at - CLOCK_LEEWAY


def _runs(job: TenantJob, tenant: Tenant | None) -> bool:
    return (
        tenant is not None
        and tenant.active
        and not _predecessors(job, tenant)
        and not before_reactivation(_queued_at(job), tenant)
    )


def tenant_identity(settings: Settings, tenant: Tenant) -> DatabaseIdentity:
    """The tenant's identity for the configured warehouse, if it is a tenant identity."""
    if settings.redshift_cluster_id:
        if not tenant.db_user:
            raise NoIdentity("the tenant has no database user; the job was not run")
        if not is_tenant_db_user(tenant.db_user, settings.tenant_db_user_prefix):
            # The user's name is for the operator's log, not for the tenant's job.
            logger.error("tenant %s names database user %r, not a tenant user", tenant.tenant_id, tenant.db_user)
            raise IdentityRefused("the tenant's database user is not a tenant identity; the job was not run")
        return DatabaseIdentity(db_user=tenant.db_user)
    if not tenant.secret_arn:
        raise NoIdentity("the tenant has no database secret; the job was not run")
    if not is_tenant_secret(tenant.secret_arn, settings.tenant_secret_prefix):
        logger.error("tenant %s names secret %r, not a tenant secret", tenant.tenant_id, tenant.secret_arn)
        raise IdentityRefused("the tenant's database secret is not a tenant identity; the job was not run")
    return DatabaseIdentity(secret_arn=tenant.secret_arn)


#: A database user name GetClusterCredentials takes (its DbUser: 1 to 64 characters, a letter first; of the rest, the
#: letters, digits and ``_`` the tenant record's own pattern allows: not its ``$``, nor a leading ``_``). Its other
#: rule, no reserved word, holds of every name under a TenantDbUserPrefix that is none itself.
CLUSTER_DB_USER = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True)
class TenantIdentities:
    """What a stack's executor takes for a tenant identity (:func:`tenant_identity`): a database user under
    ``TenantDbUserPrefix`` on a provisioned cluster, a secret under ``TenantSecretPrefix`` on Redshift Serverless.
    Asked when a tenant is made, so that one whose every job would be refused is refused itself (unasked,
    ``tenants create --db-user awsuser`` would make the tenant, print SQL that sets the admin's statement timeout, and
    spend the identity for good)."""

    cluster: bool  # a provisioned cluster (database users); else Serverless (secrets)
    prefix: str

    def problem(self, *, db_user: str | None, secret_arn: str | None) -> str | None:
        """Why the executor would refuse this identity, or None."""
        if self.cluster:
            if not db_user:
                return "this stack's warehouse is a provisioned cluster: its tenants are database users (--db-user)"
            if not is_tenant_db_user(db_user, self.prefix):
                return (
                    f"database user {db_user!r} is not a tenant user of this stack: their names start with"
                    f" {self.prefix!r} (TenantDbUserPrefix; case matters), and the executor runs as no other"
                )
            if not CLUSTER_DB_USER.fullmatch(db_user):
                return (
                    f"database user {db_user!r} is not a name the Data API can run as on a provisioned cluster (it"
                    " signs in through GetClusterCredentials): at most 64 characters, a letter first, then letters,"
                    " digits and _ (a shorter tenant id, or --db-user)"
                )
            return None
        if not secret_arn:
            return "this stack's warehouse is Redshift Serverless: its tenants are secrets (--secret-arn)"
        if not is_tenant_secret(secret_arn, self.prefix):
            return (
                f"{secret_arn!r} is not a tenant secret of this stack: a Secrets Manager secret ARN whose name starts"
                f" with {self.prefix!r} (TenantSecretPrefix), and the executor runs as no other"
            )
        return None

    @classmethod
    def of_parameters(cls, parameters: dict[str, str]) -> TenantIdentities | None:
        """The rule a stack's parameters give (``RedshiftClusterId`` or ``RedshiftWorkgroup``, and the prefix; a
        parameter left out has the template's default, the settings' own); None when neither warehouse is named."""
        defaults = Settings.model_fields
        if parameters.get("RedshiftClusterId"):
            prefix = parameters.get("TenantDbUserPrefix") or defaults["tenant_db_user_prefix"].default
            return cls(cluster=True, prefix=prefix)
        if parameters.get("RedshiftWorkgroup"):
            prefix = parameters.get("TenantSecretPrefix") or defaults["tenant_secret_prefix"].default
            return cls(cluster=False, prefix=prefix)
        return None


def is_tenant_db_user(db_user: str, prefix: str) -> bool:
    """A user under the prefix, and more than the prefix itself. Case matters: IAM's ``dbuser:<cluster>/<prefix>*``
    resource is case-sensitive, and a name that differs only in case is not one we issued."""
    return bool(prefix) and db_user.startswith(prefix) and len(db_user) > len(prefix)


def is_tenant_secret(secret_arn: str, prefix: str) -> bool:
    """A Secrets Manager secret ARN whose name (what follows ``:secret:``, the random suffix included) starts with
    the prefix. Anything that is not such an ARN (a bare name, another service's ARN) is refused."""
    parts = secret_arn.split(":", 6)
    if len(parts) != 7 or parts[0] != "arn" or parts[2] != "secretsmanager" or parts[5] != "secret":
        return False
    name = parts[6]
    return bool(prefix) and name.startswith(prefix) and len(name) > len(prefix)
