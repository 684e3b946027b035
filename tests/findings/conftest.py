"""One findings directory for the session's smoke runs, shared as a suite shares it (the
vanishing-gradients finding measures the degradation runs; the resume test reuses runs)."""

import pytest


@pytest.fixture(scope="session")
def smoke_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("findings_smoke"))
