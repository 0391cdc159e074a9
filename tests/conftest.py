"""Shared fixtures: a real local Ray for the study tests, started and stopped cleanly."""
import os

import pytest

# Every Ray this suite starts or joins uses token authentication (Ray reads the mode once, when
# it is imported: set it before any test module imports ray). A token is created if missing.
os.environ["RAY_AUTH_MODE"] = "token"


@pytest.fixture(scope="module")
def local_ray():
    """An embedded local Ray (2 CPUs) for one test module; `run_study` joins it."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
