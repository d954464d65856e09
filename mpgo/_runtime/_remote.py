"""(stub) promoted channels."""
