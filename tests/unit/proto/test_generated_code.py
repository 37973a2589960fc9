"""The committed gRPC code must be what regenerating proto/ produces."""

import subprocess
import sys

from tests.support.paths import REPO_ROOT


def test_generated_grpc_code_is_up_to_date() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "scripts.gen_proto", "--check"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr + result.stdout
