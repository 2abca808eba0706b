import pytest

from kdlab.core.errors import ConfigError
from kdlab.core.registry import Registry


def test_registry_rejects_duplicates_and_names_the_valid_entries():
    reg: Registry = Registry("widget")
    reg.register("alpha")(1)
    reg.register("beta")(2)
    with pytest.raises(ValueError, match="registered twice"):
        reg.register("alpha")(3)
    assert reg.get("beta") == 2 and reg.names() == ["alpha", "beta"] and "alpha" in reg and len(reg) == 2
    with pytest.raises(ConfigError) as err:
        reg.get("alpah")
    assert "Unknown widget 'alpah'" in str(err.value) and "Did you mean 'alpha'" in str(err.value)
    assert "Valid widgets: alpha, beta" in str(err.value)
