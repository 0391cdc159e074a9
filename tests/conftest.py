"""Shared fixtures: a real local Ray for the study tests, started and stopped cleanly."""
import pytest


@pytest.fixture(scope="module")
def local_ray():
    """An embedded local Ray (2 CPUs) for one test module; `run_study` joins it."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()
