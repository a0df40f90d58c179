"""I/O adapters around the sans-I/O core (pcap replay now; TAP and AF_PACKET later)."""
