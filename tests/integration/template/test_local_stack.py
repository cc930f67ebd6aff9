"""The local stack runs template.yaml as it is: each resource is created in moto, played by the runner (functions,
the API), or of a type with no local meaning (IAM, logs, KMS, alarms...), never an unsupported one."""

import pytest

from local.runner.provision import SKIPPED_PREFIXES

pytestmark = pytest.mark.integration


def test_every_resource_is_provisioned_played_or_has_no_local_meaning(spectra_stack):
    resources = spectra_stack.resources
    for name, resource in resources.items():
        assert resource.status in ("created", "recorded", "skipped"), name
        if resource.status == "skipped":
            assert resource.resource_type.startswith(SKIPPED_PREFIXES), (name, resource.resource_type)
    assert {"LogsKey", "ApiAccessLogGroup", "ExecutorFunctionLogGroup"} <= set(resources)
    assert resources["ExecutorFunction"].status == "recorded"
