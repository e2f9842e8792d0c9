"""pytest configuration: tests marked ``@pytest.mark.slow`` run only with --runslow."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--runslow", action="store_true", default=False, help="run slow tests"
    )


def pytest_collection_modifyitems(
    config: pytest.Config, items: list[pytest.Item]
) -> None:
    if config.getoption("--runslow"):
        return
    skip_slow = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip_slow)


# ----------------------------------------------------------------- shared fixtures


@pytest.fixture(scope="session")
def mnist_cache_dir(tmp_path_factory: pytest.TempPathFactory):
    """A session-wide cache folder for the uint8 copy of the embedded MNIST."""
    return tmp_path_factory.mktemp("mnist-cache")


@pytest.fixture(scope="session")
def mnist(mnist_cache_dir):
    """The embedded MNIST, loaded once per session (cached under a temp folder)."""
    from conceptlib.data.mnist import load_mnist

    return load_mnist("embedded", cache_dir=mnist_cache_dir)


@pytest.fixture
def cache_env(monkeypatch: pytest.MonkeyPatch, mnist_cache_dir):
    """Point ``$CONCEPTLIB_CACHE`` at the session's temporary MNIST cache."""
    monkeypatch.setenv("CONCEPTLIB_CACHE", str(mnist_cache_dir))
    return mnist_cache_dir


@pytest.fixture(scope="session", autouse=True)
def _one_thread_per_pool():
    """Run torch, OpenMP (scikit-learn's k-means) and BLAS on one thread each.

    On a busy 2-core machine, threads of a pool that wait for each other make
    training and k-means many times slower. Tests only compare results computed
    within one session, so the thread count does not change what they check.
    """
    import sklearn.cluster  # noqa: F401  (loads its OpenMP runtime for the limit)
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    with threadpool_limits(limits=1):
        yield
    torch.set_num_threads(before)
