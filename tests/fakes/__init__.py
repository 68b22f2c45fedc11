"""Real servers on loopback that speak a provider's protocol, for tests that must not reach the internet."""
