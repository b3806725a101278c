"""Local mode: the manifests a user would `kubectl apply`, run on one machine (`inferpool up`, `demo`)."""
