"""HTTP plumbing shared by every transport: request ids, problem JSON, the
identity middleware (token -> principal) and the access log."""
