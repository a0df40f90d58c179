"""The control plane around the core: health checks, the ctl socket, metrics, reload, service glue."""
