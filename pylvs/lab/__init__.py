"""Network-namespace lab for ``pylvs demo`` and the integration tests (topology, servers, client, sniffer)."""
