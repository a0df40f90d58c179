"""The sans-I/O datapath: no sockets, no event loop, no clock; time is passed in."""
