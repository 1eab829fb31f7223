"""The committed stubs are exactly what protoc makes from the .proto files."""

from protos.generate import stale_files


def test_committed_stubs_are_up_to_date():
    assert stale_files() == [], "run `make protos` and commit the regenerated stubs"
