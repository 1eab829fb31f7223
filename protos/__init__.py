"""AttnX wire formats: the .proto files under attnx/v1 and their generated stubs."""
