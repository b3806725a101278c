"""Envoy ext_proc data plane: the upstream Endpoint Picker Protocol over gRPC.

Envoy carries the bytes; this package only reads request headers and body, asks the
request core for an endpoint and tells Envoy where to send the request.
"""
