"""Development servers for demos and tests: an echo upstream and an RFC 7662
introspection endpoint. Loopback-only by default; not for production."""
