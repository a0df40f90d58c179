"""pylvs: a user-space Linux Virtual Server (IPVS-style) Layer-4 load balancer.

Embedding::

    import pylvs
    director = pylvs.Director(pylvs.load_config("lb.toml"))
    for action in director.handle(frame, "eth0", now):
        ...   # pylvs.Send(interface, frame, kind) / pylvs.Drop(reason) / Hold / Absorb
"""

__version__ = "0.1.0"

from pylvs.config import Config, ConfigError, load_config, parse_config  # noqa: E402
from pylvs.core.pipeline import Absorb, Director, Drop, Hold, Send, verdict  # noqa: E402

__all__ = ["Director", "Send", "Drop", "Hold", "Absorb", "verdict", "load_config", "parse_config", "Config",
           "ConfigError", "__version__"]
