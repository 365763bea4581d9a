"""The Pulumi program's side: from a stack file to component args and revisions (infra/__main__.py runs it)."""
