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


def test_the_local_runner_refuses_a_parameter_its_allowed_pattern_or_length_refuses():
    """As CloudFormation does: a cluster id the Data API would refuse (Spectra_Local) was taken, and every statement
    failed later at the emulator (found by the diff review)."""
    from local.runner.template import TemplateError, _parameter_values, load_template_file

    declared = load_template_file("template.yaml")["Parameters"]
    with pytest.raises(TemplateError, match="does not match"):
        _parameter_values(declared, {"RedshiftClusterId": "Spectra_Local"})
    with pytest.raises(TemplateError, match="longer than 63"):
        _parameter_values(declared, {"RedshiftClusterId": "c" * 64})
    assert _parameter_values(declared, {"RedshiftClusterId": "spectra-local"})["RedshiftClusterId"] == "spectra-local"
